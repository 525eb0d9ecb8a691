"""Fine-tune BiGS on GLUE with the published command line (same flags as `bigs glue`):

    python run_glue.py --model_name_or_path JunxiongWang/BiGS_512_MNLI --task_name mrpc \
      --max_seq_length 512 --learning_rate 2e-5 --num_train_epochs 3 \
      --per_device_train_batch_size 2 --logging_steps 100 --eval_steps 500 \
      --weight_decay 0.01 --output_dir BiGS_mrpc/
"""

import sys

from bigs.cli.common import end_process
from bigs.cli.glue import main
from bigs.runtime import relaunch_with_hugepages

if __name__ == "__main__":
    relaunch_with_hugepages(say_now=False)
    sys.exit(end_process(main(prog="run_glue.py")))
