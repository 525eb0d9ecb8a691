"""BiGSTokenizer: BERT uncased WordPiece, built from a `vocab.txt` with the `tokenizers` library.

The published BiGS checkpoints use the bert-large-uncased vocabulary (30522 entries), so the
tokenizer is BERT's: lowercase and strip accents, split on whitespace and punctuation,
WordPiece with `##` continuations, then `[CLS] A [SEP]` or `[CLS] A [SEP] B [SEP]` with
token types 0 for A (and its [CLS]/[SEP]) and 1 for B.

`save_pretrained` writes `tokenizer.json`, `vocab.txt` and `tokenizer_config.json`, the files
Hugging Face's `BertTokenizerFast.from_pretrained` reads, so a saved folder works there too.

`train_wordpiece` trains a new vocabulary on a corpus; `load_wordpiece` reads a vocab.txt into
the bare WordPiece pipeline (no [CLS]/[SEP] added) that building pretraining shards uses.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

from .data.text import expand_inputs, read_documents
from .errors import CheckpointError, ConfigError, DataError, InputError
from .files import atomic_writer, read_json_object, require_file, write_json, write_text

TOKENIZER_FILE = "tokenizer.json"
VOCAB_FILE = "vocab.txt"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"

PAD, UNK, CLS, SEP, MASK = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"
SPECIAL_TOKENS = (PAD, UNK, CLS, SEP, MASK)

_PADDING_CHOICES = ("longest", "max_length", "do_not_pad", True, False)


def _read_vocab(path: str) -> dict[str, int]:
    """vocab.txt (one token a line, id = line number from 0) -> {token: id}."""
    require_file(path, "vocabulary file", "a BERT vocab.txt")
    with open(path, "rb") as f:
        data = f.read()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[:error.start].count(b"\n") + 1
        raise DataError(f"vocabulary file {str(path)!r} is not UTF-8 (byte 0x{data[error.start]:02x} on line "
                        f"{line}); expected a BERT vocab.txt, one UTF-8 token a line") from None
    tokens = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")   # as text mode reads lines
    if tokens and tokens[-1] == "":          # the newline that ends the last line
        tokens.pop()
    vocab = {token: index for index, token in enumerate(tokens)}
    missing = [token for token in SPECIAL_TOKENS if token not in vocab]
    if missing:
        raise DataError(
            f"vocabulary file {path!r} lacks the special tokens {missing}; "
            f"expected a BERT vocab.txt containing all of {list(SPECIAL_TOKENS)}"
        )
    return vocab


def _build_wordpiece(vocab: dict[str, int], do_lower_case: bool) -> Tokenizer:
    tokenizer = Tokenizer(models.WordPiece(vocab, unk_token=UNK, max_input_chars_per_word=100))
    # strip_accents=None: accents are stripped exactly when lowercasing, as in BERT.
    tokenizer.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=do_lower_case
    )
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{CLS}:0 $A:0 {SEP}:0",
        pair=f"{CLS}:0 $A:0 {SEP}:0 $B:1 {SEP}:1",
        special_tokens=[(CLS, vocab[CLS]), (SEP, vocab[SEP])],
    )
    tokenizer.decoder = decoders.WordPiece(prefix="##")
    # Registered as special so that "[MASK]" typed in a text stays one token.
    tokenizer.add_special_tokens(list(SPECIAL_TOKENS))
    return tokenizer


def _as_tensor(values: np.ndarray, return_tensors: str | None):
    """`values` as the array type `return_tensors` names (numpy when None or "np")."""
    if return_tensors == "jax":
        import jax.numpy as jnp

        return jnp.asarray(values)
    if return_tensors == "pt":
        import torch

        return torch.from_numpy(values)
    return values


class BiGSTokenizer:
    """BERT WordPiece tokenizer returning int32 numpy arrays for the Flax model.

    Attributes:
      model_max_length: default `max_length` of `__call__` (512 for the published models).
      do_lower_case: whether texts are lowercased (and accents stripped) first.
    """

    def __init__(self, tokenizer: Tokenizer, model_max_length: int = 512, do_lower_case: bool = True):
        for token in SPECIAL_TOKENS:
            if tokenizer.token_to_id(token) is None:
                raise DataError(
                    f"tokenizer has no {token!r} token; expected a BERT WordPiece vocabulary "
                    f"containing all of {list(SPECIAL_TOKENS)}"
                )
        # A tokenizer.json may carry padding/truncation settings; ours are set per call.
        tokenizer.no_padding()
        tokenizer.no_truncation()
        self._tokenizer = tokenizer
        self.model_max_length = model_max_length
        self.do_lower_case = do_lower_case

    # ----------------------------------------------------------------------------- loading

    @classmethod
    def from_vocab(cls, path: str, do_lower_case: bool = True, model_max_length: int = 512) -> BiGSTokenizer:
        """Builds the tokenizer from a BERT `vocab.txt`."""
        return cls(_build_wordpiece(_read_vocab(path), do_lower_case), model_max_length, do_lower_case)

    @classmethod
    def from_pretrained(
        cls,
        path_or_hub_id: str,
        revision: str | None = None,
        cache_dir: str | None = None,
        token: str | None = None,
        local_files_only: bool = False,
    ) -> BiGSTokenizer:
        """Loads from a folder or hub repository holding `tokenizer.json` (preferred) or `vocab.txt`.

        A path to a `vocab.txt` or `tokenizer.json` file also works. `tokenizer_config.json`, when
        present, supplies `do_lower_case` and `model_max_length`.
        """
        if os.path.isfile(path_or_hub_id):
            if path_or_hub_id.endswith(".json"):
                return cls(_read_tokenizer_file(path_or_hub_id))
            return cls.from_vocab(path_or_hub_id)

        def find(filename: str, required: bool) -> str | None:
            if os.path.isdir(path_or_hub_id):
                path = os.path.join(path_or_hub_id, filename)
                return path if os.path.isfile(path) else None
            from .weights import resolve_file

            return resolve_file(
                path_or_hub_id, filename, revision=revision, cache_dir=cache_dir, token=token,
                local_files_only=local_files_only, required=required,
            )

        settings = {}
        config_path = find(TOKENIZER_CONFIG_FILE, required=False)
        if config_path is not None:
            config = read_json_object(config_path, "the tokenizer settings save_pretrained writes", CheckpointError)
            settings = {key: config[key] for key in ("do_lower_case", "model_max_length") if key in config}
            # HF writes a huge sentinel when the length is unbounded; keep ours finite.
            if settings.get("model_max_length", 0) > 1_000_000:
                del settings["model_max_length"]

        tokenizer_path = find(TOKENIZER_FILE, required=False)
        if tokenizer_path is not None:
            return cls(_read_tokenizer_file(tokenizer_path), **settings)
        vocab_path = find(VOCAB_FILE, required=not os.path.isdir(path_or_hub_id))
        if vocab_path is None:
            raise CheckpointError(
                f"{path_or_hub_id!r} holds neither {TOKENIZER_FILE} nor {VOCAB_FILE}; "
                "expected a folder with a BERT WordPiece tokenizer"
            )
        return cls.from_vocab(vocab_path, **settings)

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        """Writes tokenizer.json, vocab.txt and tokenizer_config.json into `directory`, each atomically."""
        with atomic_writer(Path(directory) / TOKENIZER_FILE) as tmp:
            self._tokenizer.save(str(tmp))
        write_vocab(self._tokenizer, Path(directory))
        config = {
            "tokenizer_class": "BertTokenizer",
            "do_lower_case": self.do_lower_case,
            "model_max_length": self.model_max_length,
            "tokenize_chinese_chars": True,
            "strip_accents": None,
            "unk_token": UNK,
            "sep_token": SEP,
            "pad_token": PAD,
            "cls_token": CLS,
            "mask_token": MASK,
        }
        write_json(Path(directory) / TOKENIZER_CONFIG_FILE, config)

    # ---------------------------------------------------------------------------- encoding

    def __call__(
        self,
        texts: str | Sequence[str],
        text_pairs: str | Sequence[str] | None = None,
        max_length: int | None = None,
        padding: str | bool = "longest",
        truncation: bool = True,
        pad_to_multiple_of: int | None = None,
        return_numpy: bool = True,
        return_tensors: str | None = None,
        return_truncated: bool = False,
    ) -> dict[str, np.ndarray] | dict[str, list[list[int]]]:
        """Tokenizes a batch of texts (or text pairs).

        Args:
          texts: one string or a list of them (a single string is a batch of one).
          text_pairs: second segments, same number as `texts`, or None.
          max_length: longest output, special tokens included; defaults to `model_max_length`.
          padding: "longest" (or True) pads to the batch's longest, "max_length" to
            `max_length`, False (or "do_not_pad") not at all.
          truncation: cut to `max_length`; pairs drop tokens from the longer segment first.
          pad_to_multiple_of: round the padded length up to a multiple of this.
          return_numpy: int32 arrays [batch, length]; else lists of lists (may be ragged).
          return_tensors: as in transformers, "np" (int32 numpy, the default), "jax" (int32
            jax arrays) or "pt" (int64 torch tensors); overrides return_numpy.
          return_truncated: also return "truncated", [batch] bool (a list when the rest are
            lists): whether truncation cut tokens from that row. Counting what a cut loses
            this way costs no second tokenisation.

        Returns:
          {"input_ids", "attention_mask", "token_type_ids"}, each [batch, length], and
          "truncated" when asked.

        Raises:
          InputError: texts and text_pairs of different counts, a max_length with no room
            for text, an unknown padding or return_tensors, or ragged rows asked as arrays.
        """
        if return_tensors not in (None, "np", "jax", "pt"):
            raise InputError(f"return_tensors={return_tensors!r}; expected 'np', 'jax' or 'pt'")
        if isinstance(texts, str):
            texts = [texts]
        if isinstance(text_pairs, str):
            text_pairs = [text_pairs]
        texts = list(texts)
        if text_pairs is not None and len(text_pairs) != len(texts):
            raise InputError(
                f"got {len(texts)} texts but {len(text_pairs)} text_pairs; expected one pair per text"
            )
        max_length = self.model_max_length if max_length is None else max_length
        num_special = 2 if text_pairs is None else 3
        if max_length < num_special:
            raise InputError(
                f"max_length={max_length} leaves no room for text; expected at least {num_special} "
                "(the [CLS]/[SEP] tokens count)"
            )
        if padding not in _PADDING_CHOICES:
            raise InputError(f"padding={padding!r}; expected one of {list(_PADDING_CHOICES)}")

        if truncation:
            self._tokenizer.enable_truncation(max_length, strategy="longest_first")
        if padding in ("longest", True, "max_length"):
            self._tokenizer.enable_padding(
                pad_id=self.pad_token_id, pad_token=PAD,
                length=max_length if padding == "max_length" else None,
                pad_to_multiple_of=pad_to_multiple_of,
            )
        try:
            inputs = texts if text_pairs is None else list(zip(texts, text_pairs))
            encodings = self._tokenizer.encode_batch(inputs)
        finally:
            self._tokenizer.no_truncation()
            self._tokenizer.no_padding()

        batch = {
            "input_ids": [encoding.ids for encoding in encodings],
            "attention_mask": [encoding.attention_mask for encoding in encodings],
            "token_type_ids": [encoding.type_ids for encoding in encodings],
        }
        # the tokenizers library puts what truncation cut in `overflowing`, empty when nothing was
        truncated = [bool(encoding.overflowing) for encoding in encodings] if return_truncated else None
        if not return_numpy and return_tensors is None:
            return batch if truncated is None else {**batch, "truncated": truncated}
        lengths = sorted({len(ids) for ids in batch["input_ids"]})
        if len(lengths) > 1:
            raise InputError(
                f"sequences have different lengths {lengths} (padding={padding!r}, "
                f"truncation={truncation}, max_length={max_length}); expected one length to stack "
                "into arrays: pad, truncate, or pass return_numpy=False"
            )
        width = lengths[0] if lengths else 0
        dtype = np.int64 if return_tensors == "pt" else np.int32   # torch's embedding lookups take int64
        arrays = {key: _as_tensor(np.asarray(rows, dtype).reshape(len(rows), width), return_tensors)
                  for key, rows in batch.items()}
        if truncated is not None:
            arrays["truncated"] = _as_tensor(np.asarray(truncated, bool), return_tensors)
        return arrays

    def encode(
        self,
        text: str,
        text_pair: str | None = None,
        add_special_tokens: bool = True,
        max_length: int | None = None,
        truncation: bool = False,
    ) -> list[int]:
        """Token ids of one text (or pair), with [CLS]/[SEP] unless `add_special_tokens=False`."""
        if truncation:
            self._tokenizer.enable_truncation(
                self.model_max_length if max_length is None else max_length, strategy="longest_first"
            )
        try:
            return self._tokenizer.encode(text, text_pair, add_special_tokens=add_special_tokens).ids
        finally:
            self._tokenizer.no_truncation()

    def tokenize(self, text: str) -> list[str]:
        """WordPiece tokens of `text`, without [CLS]/[SEP]."""
        return self._tokenizer.encode(text, add_special_tokens=False).tokens

    def decode(self, ids: Sequence[int] | np.ndarray, skip_special_tokens: bool = True) -> str:
        """Text of a 1-D sequence of ids; `##` pieces are joined back into words."""
        return self._tokenizer.decode([int(i) for i in np.asarray(ids).reshape(-1)], skip_special_tokens)

    def convert_tokens_to_ids(self, tokens: str | Sequence[str]) -> int | list[int]:
        """Id of a token (or list of them); tokens not in the vocabulary map to [UNK]."""
        if isinstance(tokens, str):
            token_id = self._tokenizer.token_to_id(tokens)
            return self.unk_token_id if token_id is None else token_id
        return [self.convert_tokens_to_ids(token) for token in tokens]

    def convert_ids_to_tokens(self, ids: int | Sequence[int]) -> str | list[str]:
        """Token string of an id (or list of them)."""
        if isinstance(ids, (int, np.integer)):
            token = self._tokenizer.id_to_token(int(ids))
            if token is None:
                raise InputError(f"token id {int(ids)} is out of range; expected 0..{self.vocab_size - 1}")
            return token
        return [self.convert_ids_to_tokens(int(i)) for i in ids]

    # -------------------------------------------------------------------------- properties

    @property
    def backend(self):
        """The underlying `tokenizers.Tokenizer` (no padding or truncation set)."""
        return self._tokenizer

    @property
    def vocab_size(self) -> int:
        """Number of token ids, added tokens included (30,522 for BERT's uncased vocabulary)."""
        return self._tokenizer.get_vocab_size(with_added_tokens=True)

    def __len__(self) -> int:
        return self.vocab_size

    def check_fits(self, model_vocab_size: int) -> None:
        """ConfigError unless every id this tokenizer gives is below `model_vocab_size` (the
        model's config.vocab_size): ids past the model's vocabulary would give garbage."""
        if self.vocab_size > model_vocab_size:
            raise ConfigError(f"the tokenizer has {self.vocab_size} tokens but the model's vocab_size is "
                              f"{model_vocab_size}: they do not belong together (ids past the model's "
                              "vocabulary would give garbage)")

    @property
    def pad_token_id(self) -> int:
        """The id of [PAD]."""
        return self._tokenizer.token_to_id(PAD)

    @property
    def unk_token_id(self) -> int:
        """The id of [UNK]."""
        return self._tokenizer.token_to_id(UNK)

    @property
    def cls_token_id(self) -> int:
        """The id of [CLS]."""
        return self._tokenizer.token_to_id(CLS)

    @property
    def sep_token_id(self) -> int:
        """The id of [SEP]."""
        return self._tokenizer.token_to_id(SEP)

    @property
    def mask_token_id(self) -> int:
        """The id of [MASK]."""
        return self._tokenizer.token_to_id(MASK)


# ------------------------------------------------------------------------- WordPiece training


def load_wordpiece(vocab_file: str | os.PathLike, lowercase: bool = True) -> Tokenizer:
    """BERT's WordPiece tokenizer (no [CLS]/[SEP] added) from a vocab.txt.

    Raises DataError when vocab_file is missing, a folder, not UTF-8, or lacks the special
    tokens.
    """
    vocab = _read_vocab(os.fspath(vocab_file))
    return _bert_pipeline(models.WordPiece(vocab, unk_token=UNK, max_input_chars_per_word=100), lowercase)


def _read_tokenizer_file(path: str) -> Tokenizer:
    """A tokenizers-library tokenizer.json; CheckpointError naming the file when it cannot be read."""
    try:
        return Tokenizer.from_file(path)
    except Exception as error:           # the tokenizers library raises a bare Exception
        raise CheckpointError(f"{path!r} is not a tokenizer file the tokenizers library can read ({error}); "
                              "expected the tokenizer.json save_pretrained writes") from None


def train_wordpiece(
    files: Sequence[str | os.PathLike], vocab_size: int, output_dir: str | os.PathLike
) -> Path:
    """Trains a lowercase WordPiece vocabulary on text files; writes and returns output_dir/vocab.txt.

    Ids 0-4 are [PAD], [UNK], [CLS], [SEP], [MASK]. The text is read as `build_shards` reads
    it (bigs.data.text.read_documents: wikitext headings dropped, "@-@" escapes undone).

    Raises:
      ConfigError: vocab_size leaves no room beyond the five special tokens.
      DataError: an input is missing, unreadable or not text.
    """
    if vocab_size < len(SPECIAL_TOKENS) + 1:
        raise ConfigError(f"vocab_size={vocab_size}; expected more than {len(SPECIAL_TOKENS)}")
    tokenizer = _bert_pipeline(models.WordPiece(unk_token=UNK), lowercase=True)
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS), show_progress=False
    )
    sentences = (s for path in expand_inputs(files) for doc in read_documents(path) for s in doc)
    tokenizer.train_from_iterator(sentences, trainer=trainer)
    return write_vocab(tokenizer, Path(output_dir))


def _bert_pipeline(model: models.WordPiece, lowercase: bool) -> Tokenizer:
    """`model` behind BERT's normaliser and pre-tokenizer, with no special tokens added."""
    tokenizer = Tokenizer(model)
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=lowercase)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    return tokenizer


def write_vocab(tokenizer: Tokenizer, output_dir: Path) -> Path:
    """Writes the vocabulary as output_dir/vocab.txt (line number = id), atomically; returns its path."""
    vocab = tokenizer.get_vocab(with_added_tokens=True)
    by_id = sorted(vocab.items(), key=lambda item: item[1])
    if [index for _, index in by_id] != list(range(len(by_id))):
        raise DataError(f"tokenizer ids are not 0..{len(by_id) - 1} without gaps; cannot write a vocab.txt")
    return write_text(output_dir / VOCAB_FILE, "".join(token + "\n" for token, _ in by_id))
