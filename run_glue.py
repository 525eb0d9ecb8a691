"""Fine-tune BiGS on GLUE with the published command line (same flags as `bigs glue`):

    python run_glue.py --model_name_or_path JunxiongWang/BiGS_512_MNLI --task_name mrpc \
      --max_seq_length 512 --learning_rate 2e-5 --num_train_epochs 3 \
      --per_device_train_batch_size 2 --logging_steps 100 --eval_steps 500 \
      --weight_decay 0.01 --output_dir BiGS_mrpc/
"""

import sys

from bigs.cli.main import run_program

if __name__ == "__main__":
    sys.exit(run_program("glue", sys.argv[1:], prog="run_glue.py"))
