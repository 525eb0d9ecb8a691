"""BiGS in the tools PyTorch users already use: pipelines, Trainer, sentence embeddings
(SentenceTransformer, the feature-extraction pipeline, `bigs embed`), long documents, ONNX
and torch.compile. Tiny models, each test well under a minute."""

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="needs the torch extra: pip install -e '.[torch]'")
transformers = pytest.importorskip("transformers", reason="needs transformers >= 5")

import bigs.torch as bt  # noqa: E402
from bigs import BiGSTokenizer  # noqa: E402

SENTENCES = ["the cat sat on the mat .", "a dog", "red fox and the owl sat on a very long mat today",
             "hello", "the sun is up"]


@pytest.fixture(scope="module")
def tokenizer(vocab_file):
    return BiGSTokenizer.from_vocab(str(vocab_file))


def tiny(**overrides):
    values = dict(vocab_size=30522, hidden_size=16, intermediate_size=24, num_hidden_layers=2, num_ssm=4,
                  max_position_embeddings=64, hidden_dropout_prob=0.0)
    return bt.BiGSTransformersConfig(**{**values, **overrides})


def saved(tmp_path, tokenizer, model_class, name="m", seed=0, **overrides):
    torch.manual_seed(seed)
    model = model_class(tiny(**overrides)).eval()
    folder = tmp_path / name
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return model, folder


def encode(tokenizer, texts, pairs=None):
    batch = tokenizer(texts, pairs, padding="longest")
    return {k: torch.from_numpy(np.asarray(v)).long() for k, v in batch.items()}


def alone(model, tokenizer, text):
    with torch.no_grad():
        return model(**encode(tokenizer, [text]))


# ------------------------------------------------------------------------ pipelines
def test_pipelines_match_the_model_called_directly(tmp_path, tokenizer):
    from transformers import pipeline

    mlm, folder = saved(tmp_path, tokenizer, bt.BiGSForMaskedLM, "mlm", pad_mode="exact")
    fill = pipeline("fill-mask", model=str(folder))
    text = "the cat sat on the [MASK] ."
    top = fill(text, top_k=3)
    logits = alone(mlm, tokenizer, text).logits[0]
    position = encode(tokenizer, [text])["input_ids"][0].tolist().index(tokenizer.mask_token_id)
    probs = logits[position].softmax(-1)
    assert [r["token"] for r in top] == probs.topk(3).indices.tolist()
    np.testing.assert_allclose([r["score"] for r in top], probs.topk(3).values.numpy(), rtol=1e-4)

    classifier, folder = saved(tmp_path, tokenizer, bt.BiGSForSequenceClassification, "cls", num_labels=3,
                               pad_mode="exact")
    pipe = pipeline("text-classification", model=str(folder), top_k=None)
    results = pipe([SENTENCES[0], {"text": SENTENCES[1], "text_pair": SENTENCES[2]}])
    expected = [alone(classifier, tokenizer, SENTENCES[0]).logits[0].softmax(-1)]
    with torch.no_grad():
        expected.append(classifier(**encode(tokenizer, [SENTENCES[1]], [SENTENCES[2]])).logits[0].softmax(-1))
    for result, probs in zip(results, expected):
        got = {r["label"]: r["score"] for r in result}
        np.testing.assert_allclose([got[f"LABEL_{i}"] for i in range(3)], probs.numpy(), rtol=1e-4)

    tagger, folder = saved(tmp_path, tokenizer, bt.BiGSForTokenClassification, "tok", num_labels=4,
                           pad_mode="exact")
    tags = pipeline("token-classification", model=str(folder))(SENTENCES[0])
    probs = alone(tagger, tokenizer, SENTENCES[0]).logits[0].softmax(-1)
    for tag in tags:
        assert tag["entity"] == f"LABEL_{int(probs[tag['index']].argmax())}"
        assert tag["score"] == pytest.approx(float(probs[tag["index"]].max()), rel=1e-4)

    encoder, folder = saved(tmp_path, tokenizer, bt.BiGSModel, "enc", pad_mode="exact")
    features = pipeline("feature-extraction", model=str(folder))(SENTENCES[2])
    np.testing.assert_allclose(np.asarray(features[0]), alone(encoder, tokenizer, SENTENCES[2]).last_hidden_state[0],
                               rtol=1e-5, atol=1e-5)


def test_question_answering_head_gives_spans(tmp_path, tokenizer):
    """transformers 5 removed the question-answering pipeline; the head itself works."""
    qa, _ = saved(tmp_path, tokenizer, bt.BiGSForQuestionAnswering, "qa", num_labels=2)
    out = alone(qa, tokenizer, "who sat ? the cat sat .")
    assert out.start_logits.shape == out.end_logits.shape == (1, 9)


# -------------------------------------------------------------------------- Trainer
def test_trainer_fine_tunes_and_the_folder_loads_in_flax(tmp_path, tokenizer):
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    import bigs

    rng = np.random.RandomState(0)
    words = ["good", "bad"]
    texts = [" ".join(rng.choice(["the", "a", "movie", "was", words[i % 2]], 6)) + f" {words[i % 2]}"
             for i in range(64)]
    labels = [i % 2 for i in range(64)]
    features = [dict(tokenizer([t], padding=False, return_numpy=False), labels=y) for t, y in zip(texts, labels)]
    features = [{k: (v[0] if isinstance(v, list) else v) for k, v in f.items()} for f in features]
    torch.manual_seed(0)
    model = bt.BiGSForSequenceClassification(tiny(num_labels=2, pad_mode="exact"))

    class Tokenizer:          # DataCollatorWithPadding needs only pad()
        def pad(self, batch, **kwargs):
            width = max(len(f["input_ids"]) for f in batch)
            out = {k: [] for k in ("input_ids", "attention_mask", "token_type_ids")}
            for f in batch:
                n = len(f["input_ids"])
                out["input_ids"].append(list(f["input_ids"]) + [0] * (width - n))
                out["token_type_ids"].append(list(f["token_type_ids"]) + [0] * (width - n))
                out["attention_mask"].append([1] * n + [0] * (width - n))
            out = {k: torch.tensor(v) for k, v in out.items()}
            if "labels" in batch[0]:
                out["labels"] = torch.tensor([f["labels"] for f in batch])
            return out

    args = TrainingArguments(output_dir=str(tmp_path / "run"), per_device_train_batch_size=8, learning_rate=3e-3,
                             num_train_epochs=3, logging_steps=4, eval_strategy="epoch", report_to=[],
                             save_strategy="no", use_cpu=True, seed=0, disable_tqdm=True)
    trainer = Trainer(model=model, args=args, train_dataset=features, eval_dataset=features[:16],
                      data_collator=DataCollatorWithPadding(Tokenizer()))
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert losses[-1] < losses[0]
    assert "eval_loss" in trainer.evaluate()

    model.eval()
    collated = DataCollatorWithPadding(Tokenizer())(features[:8])
    collated.pop("labels")
    with torch.no_grad():
        batched = model(**collated).logits
        for row, feature in enumerate(features[:8]):                  # exact padding: alone == in the batch
            single = {k: torch.tensor([feature[k]]) for k in ("input_ids", "token_type_ids")}
            np.testing.assert_allclose(model(**single).logits[0], batched[row], rtol=1e-5, atol=1e-6)
    model.save_pretrained(tmp_path / "trained")
    again = bt.BiGSForSequenceClassification.from_pretrained(tmp_path / "trained")
    with torch.no_grad():
        assert torch.equal(again(**collated).logits, batched)
    flax_model = bigs.FlaxBiGSForSequenceClassification.from_pretrained(tmp_path / "trained")
    flax_logits = flax_model(*(collated[k].numpy() for k in ("input_ids", "attention_mask", "token_type_ids"))).logits
    np.testing.assert_allclose(np.asarray(flax_logits), batched.numpy(), rtol=1e-5, atol=2e-5)


# ----------------------------------------------------------------- embeddings
def test_sentence_embeddings_are_the_same_on_every_path_and_in_any_batch(tmp_path, tokenizer):
    st = pytest.importorskip("sentence_transformers", reason="needs the sentence extra")
    from transformers import pipeline

    from bigs.cli.main import main

    encoder, folder = saved(tmp_path, tokenizer, bt.BiGSModel, "enc", seed=3)      # config pad_mode: reference
    with torch.no_grad():
        own = [alone(encoder, tokenizer, s).last_hidden_state[0].mean(0).numpy() for s in SENTENCES]

    model = st.SentenceTransformer(str(folder), device="cpu", model_kwargs={"pad_mode": "exact"})
    assert isinstance(model[0].auto_model, bt.BiGSModel) and model[0].auto_model.config.pad_mode == "exact"
    batched = model.encode(SENTENCES, batch_size=5)
    singles = np.stack([model.encode([s])[0] for s in SENTENCES])
    np.testing.assert_allclose(batched, np.stack(own), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(singles, np.stack(own), rtol=1e-5, atol=1e-5)

    features = pipeline("feature-extraction", model=str(folder), model_kwargs={"pad_mode": "exact"})
    outputs = features(SENTENCES, batch_size=5)      # each row padded to the batch's longest
    for row, sentence in enumerate(SENTENCES):
        real = len(encode(tokenizer, [sentence])["input_ids"][0])
        np.testing.assert_allclose(np.asarray(outputs[row][0])[:real].mean(0), own[row], rtol=1e-5, atol=1e-5)

    (tmp_path / "lines.txt").write_text("\n".join(SENTENCES) + "\n")
    for batch_size in ("1", "4"):
        out = tmp_path / f"v{batch_size}.npy"
        assert main(["embed", "--model_name_or_path", str(folder), "--input", str(tmp_path / "lines.txt"),
                     "--output", str(out), "--batch_size", batch_size, "--disable_tqdm"]) == 0
        np.testing.assert_allclose(np.load(out), np.stack(own), rtol=1e-5, atol=2e-5)     # Flax == torch
    assert main(["embed", "--model_name_or_path", str(folder), "--input", str(tmp_path / "lines.txt"),
                 "--output", str(tmp_path / "v.jsonl"), "--disable_tqdm"]) == 0
    rows = [json.loads(line) for line in (tmp_path / "v.jsonl").read_text().splitlines()]
    np.testing.assert_allclose(np.array(rows), np.stack(own), rtol=1e-5, atol=2e-5)
    assert main(["embed", "--model_name_or_path", str(folder), "--input", str(tmp_path / "lines.txt"),
                 "--output", str(tmp_path / "v.jsonl"), "--disable_tqdm"]) == 2       # never overwritten silently


def test_long_documents_in_one_pass(tmp_path, tokenizer):
    """4096 tokens through classification and embeddings, no windowing; torch equals Flax."""
    import bigs

    classifier, folder = saved(tmp_path, tokenizer, bt.BiGSForSequenceClassification, "long", num_labels=2,
                               max_position_embeddings=4096, num_hidden_layers=1)
    rng = np.random.RandomState(0)
    ids = torch.from_numpy(rng.randint(1000, 30000, (1, 4096))).long()
    with torch.no_grad():
        out = classifier(input_ids=ids, output_hidden_states=True)
    flax_model = bigs.FlaxBiGSForSequenceClassification.from_pretrained(folder)
    flax_out = flax_model(ids.numpy(), output_hidden_states=True)
    np.testing.assert_allclose(out.logits.numpy(), np.asarray(flax_out.logits), rtol=1e-4, atol=1e-4)
    embedding = out.hidden_states[-1][0].mean(0)
    np.testing.assert_allclose(embedding.numpy(), np.asarray(flax_out.hidden_states[-1][0]).mean(0),
                               rtol=1e-4, atol=1e-4)


# ------------------------------------------------------------------------- ONNX
@pytest.mark.parametrize("pad_mode", ["reference", "exact"])
def test_onnx_export_matches_torch(tmp_path, tokenizer, pad_mode):
    ort = pytest.importorskip("onnxruntime", reason="needs the onnx extra")
    pytest.importorskip("onnxscript", reason="needs the onnx extra")
    from bigs.cli.main import main

    model, folder = saved(tmp_path, tokenizer, bt.BiGSForSequenceClassification, "m", num_labels=3,
                          pad_mode=pad_mode)
    path = tmp_path / "m.onnx"
    assert main(["export-onnx", "--model_name_or_path", str(folder), "--output", str(path)]) == 0
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["input_ids", "attention_mask", "token_type_ids"]
    assert [o.name for o in session.get_outputs()] == ["logits"]
    rng = np.random.RandomState(1)
    for length in (1, 23, 64):
        ids = rng.randint(1, 30000, (3, length))
        mask = np.ones_like(ids)
        mask[1, length // 2 + 1:] = 0
        types = np.zeros_like(ids)
        got = session.run(None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": types})[0]
        with torch.no_grad():
            expected = model(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask),
                             token_type_ids=torch.tensor(types)).logits.numpy()
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    assert main(["export-onnx", "--model_name_or_path", str(folder), "--output", str(path)]) == 2   # exists


def test_torch_compile_gives_the_same_outputs():
    """Graph capture and AOT autograd (backend aot_eager: no C++ compiler needed in CI; the
    speed of the default inductor backend is measured in benchmarks/bench_torch.py)."""
    torch.manual_seed(0)
    model = bt.BiGSForSequenceClassification(tiny(num_labels=3, max_position_embeddings=64)).eval()
    compiled = torch.compile(model, backend="aot_eager", dynamic=False)
    ids = torch.randint(1, 30000, (2, 20))
    mask = torch.ones_like(ids)
    mask[1, 12:] = 0
    with torch.no_grad():
        np.testing.assert_allclose(compiled(input_ids=ids, attention_mask=mask).logits.numpy(),
                                   model(input_ids=ids, attention_mask=mask).logits.numpy(), rtol=1e-5, atol=1e-6)
    model.train()
    loss = compiled(input_ids=ids, attention_mask=mask, labels=torch.tensor([0, 2])).loss
    loss.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
