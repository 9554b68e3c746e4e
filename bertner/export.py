"""`bertner export RUN OUT`: a run as a folder that plain Hugging Face tools load, offline, with no custom code.

The folder holds a `*ForTokenClassification` model of the run's encoder type (the encoder's weights and the
run's classifier, labels in `config.id2label`), a tokenizer, `README.md` (how to use it, what differs from
`bertner predict`) and `bertner_export.json` (where it came from). A CRF run adds `crf.safetensors`, the
transition scores, since no transformers class holds a CRF.

The tokenizer cuts text as the run's aligner does, so the model sees the tokens it was trained on. In char
alignment that is not the encoder's own tokenizer, which would lower-case, drop whitespace and cut Latin words
and numbers into `##` word pieces: the exported one gives every character its own token. Characters bertner reads
through a fallback (the lower-case or NFKC form, whitespace as `[unused1]`/`[SPACE]`) get a vocabulary entry
of their own whose embedding row copies the row bertner uses, so the two agree without any normaliser.
"""

from __future__ import annotations

import copy
import json
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from bertner.errors import BertnerError, ModelError, OutputExistsError
from bertner.fileio import atomic_dir, check_writable, parse_json, write_json
from bertner.models.encoder import load_tokenizer, quiet_transformers
from bertner.runs import RunDir, check_output_place

EXPORT_RECORD = "bertner_export.json"
CRF_FILE = "crf.safetensors"
ANY_CHARACTER = r"[\s\S]"  # one code point, line breaks included (a bare `.` skips them)


@dataclass
class ExportResult:
    """What `export_run` wrote: the folder, the head, and how its pipeline output differs from `bertner predict`."""

    output: Path
    head: str  # softmax | crf
    added_tokens: int  # vocabulary entries added for characters bertner reads through a fallback
    notes: list[str] = field(default_factory=list)  # what differs from `bertner predict`, one line each


def export_run(run_path: str | Path, output: str | Path, force: bool = False, language: str | None = None) -> ExportResult:
    """Write the run in `run_path` as a Hugging Face token-classification folder `output` (atomically).

    `language` (ISO 639-1) goes into the model card; by default it is read from the script of the run's dev text.
    """
    run_path, output = Path(run_path), Path(output)
    if language is not None and not re.fullmatch(r"[a-z]{2,3}", language):
        raise BertnerError(f"--language {language!r}: give an ISO 639 code such as zh or en")
    run_dir = RunDir(run_path)
    run_dir.check()
    check_output_place(output, [run_path])
    config = run_dir.load_config()
    for flag, used in (("--lexicon", bool(config.lexicon)), ("--softword", config.softword)):
        if used:
            raise BertnerError(f"{run_path} was trained with {flag}, whose features no transformers model takes: "
                               "Hugging Face tools cannot run it; tag with `bertner predict`")
    if config.model == "bilstm":
        raise BertnerError(f"{run_path} is a --model bilstm run, not a transformers model: Hugging Face tools "
                           "cannot load it; tag with `bertner predict`")
    if config.gru:
        raise BertnerError(f"{run_path} has a GRU between encoder and head, which no transformers model class "
                           "holds: Hugging Face tools cannot run it without custom code; tag with `bertner predict` "
                           "(export covers softmax and CRF heads)")
    if output.exists() and (not output.is_dir() or any(output.iterdir())) and not force:
        raise OutputExistsError(f"{output} already exists; pass --force to write the export into it")
    check_writable(output, folder=True)  # before the run is loaded
    run = run_dir.load()
    extra = fallback_characters(run.aligner) if run.aligner.mode == "char" else {}
    model = token_classification_model(run, extra)
    with atomic_dir(output) as folder:
        with quiet_transformers():
            model.save_pretrained(str(folder))
        save_tokenizer(run, extra, folder)
        if config.crf:
            from safetensors.torch import save_file

            crf = run.model.crf
            save_file({name: getattr(crf, name).detach().contiguous().cpu()
                       for name in ("start_transitions", "transitions", "end_transitions")}, str(folder / CRF_FILE))
        notes = differences(run, config)
        language = language or text_language(run_dir)
        (folder / "README.md").write_text(model_card(run_path, output, run, config, notes, language),
                                          encoding="utf-8")
        write_json(folder / EXPORT_RECORD, {
            "format": 1, "run": str(run_path), "variant": config.variant, "head": "crf" if config.crf else "softmax",
            "scheme": run.scheme, "alignment": run.aligner.mode,
            "whitespace_tokens": bool(getattr(run.aligner, "whitespace_tokens", False)),
            "added_tokens": len(extra), "max_chars": run.data_info.get("max_chars"),
        })
    return ExportResult(output, "crf" if config.crf else "softmax", len(extra), notes)


# -- the model -----------------------------------------------------------------------------------
def pipeline_labels(tags: list[str]) -> dict[int, str]:
    """id -> label as the pipeline groups them (B-/I-): BIOES's S- and E- read as B- and I-."""
    rename = {"S": "B", "E": "I"}
    return {i: tag if tag == "O" else f"{rename.get(tag[0], tag[0])}{tag[1:]}" for i, tag in enumerate(tags)}


def token_classification_model(run: Any, extra: dict[str, int]) -> Any:
    """The run's encoder and classifier as transformers' `*ForTokenClassification` of the encoder's type."""
    from transformers import AutoModelForTokenClassification

    tagger = run.model
    config = copy.deepcopy(tagger.encoder.config)
    id2label = pipeline_labels(run.tags)
    config.num_labels = len(id2label)
    config.id2label = id2label
    config.label2id = {label: i for i, label in reversed(id2label.items())}
    config.architectures = None
    with quiet_transformers():
        try:
            model = AutoModelForTokenClassification.from_config(config)
        except (ValueError, KeyError) as e:
            raise ModelError(f"transformers has no token-classification model for {config.model_type!r} "
                             f"({str(e).splitlines()[0]})") from None
    classifier = getattr(model, "classifier", None)
    if not isinstance(classifier, torch.nn.Linear) or classifier.weight.shape != tagger.classifier.weight.shape:
        raise ModelError(f"cannot export: {type(model).__name__} has no classifier of bertner's shape")
    state = {f"{model.base_model_prefix}.{k}": v for k, v in tagger.encoder.state_dict().items()}
    state.update({f"classifier.{k}": v for k, v in tagger.classifier.state_dict().items()})
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ModelError(f"cannot export: {type(model).__name__}'s parameters differ from the run's "
                         f"(missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]})")
    if extra:
        rows = model.get_input_embeddings().weight.shape[0]
        model.resize_token_embeddings(rows + len(extra), mean_resizing=False)
        table = model.get_input_embeddings().weight
        with torch.no_grad():
            table[rows:] = table[list(extra.values())]  # each new character starts from the row bertner reads
    return model.eval()


# -- the tokenizer -------------------------------------------------------------------------------
def fallback_characters(aligner: Any) -> dict[str, int]:
    """Characters missing from the vocabulary that bertner still reads as a known token: char -> that token id.

    Whitespace reads as the space token; other characters through their lower-case or NFKC form (`A` as `a`,
    `Ａ` as `a`). Everything else not in the vocabulary is `[UNK]` on both sides and needs no entry.
    """
    vocab = aligner.vocab
    found: dict[str, int] = {}
    for code in range(0x110000):
        if 0xD800 <= code <= 0xDFFF:
            continue  # surrogates are never characters of a Python str read from a file
        char = chr(code)
        if char in vocab:
            continue  # (a vocabulary with whitespace entries is not one bertner's char alignment meets)
        if char.isspace():
            if aligner.whitespace_tokens:
                found[char] = aligner.space_id
            continue  # else skipped before look-up, on both sides
        if char.lower() == char and unicodedata.normalize("NFKC", char) == char:
            continue  # no fallback form to find: [UNK] on both sides
        token = aligner.token_id(char)
        if token != aligner.unk_id:
            found[char] = token
    return found


def _whitespace_class() -> str:
    """A regex class of exactly the characters Python's str.isspace() accepts (what bertner skips or maps)."""
    return "[" + "".join(f"\\x{{{code:x}}}" for code in range(0x110000) if chr(code).isspace()) + "]"


def char_tokenizer(aligner: Any, extra: dict[str, int], first_new_id: int, special: dict[str, str]) -> Any:
    """A `tokenizers` pipeline that cuts text as bertner's CharAligner does: one token per character."""
    from tokenizers import Regex, Tokenizer, decoders, pre_tokenizers, processors
    from tokenizers.models import WordPiece

    vocab = dict(aligner.vocab)
    for offset, char in enumerate(extra):
        vocab[char] = first_new_id + offset
    tokenizer = Tokenizer(WordPiece(vocab, unk_token=special["unk_token"], max_input_chars_per_word=100))
    every_character = pre_tokenizers.Split(Regex(ANY_CHARACTER), behavior="isolated")
    if aligner.whitespace_tokens:
        tokenizer.pre_tokenizer = every_character
    else:
        skip = pre_tokenizers.Split(Regex(_whitespace_class() + "+"), behavior="removed")
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence([skip, every_character])
    cls, sep = special["cls_token"], special["sep_token"]
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{cls} $A {sep}", pair=f"{cls} $A {sep} $B:1 {sep}:1",
        special_tokens=[(cls, aligner.cls_id), (sep, aligner.sep_id)],
    )
    # Tokens are characters: joined without spaces, a pipeline's `word` is the entity's text.
    tokenizer.decoder = decoders.Fuse()
    return tokenizer


def save_tokenizer(run: Any, extra: dict[str, int], folder: Path) -> None:
    """The tokenizer files: bertner's character cutting for char runs, the encoder's own for subword runs."""
    from transformers import PreTrainedTokenizerFast

    with quiet_transformers():
        original = load_tokenizer(run.path / "encoder")
        if run.aligner.mode != "char":
            original.model_max_length = run.max_positions
            original.save_pretrained(str(folder))
            return
        special = {name: str(getattr(original, name)) for name in
                   ("unk_token", "cls_token", "sep_token", "pad_token", "mask_token") if getattr(original, name, None)}
        first_new_id = run.model.encoder.get_input_embeddings().weight.shape[0]  # new rows follow the run's
        backend = char_tokenizer(run.aligner, extra, first_new_id, special)
        # split_special_tokens: a literal "[CLS]" in the text is five characters, as bertner reads it.
        tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, model_max_length=run.max_positions,
                                            split_special_tokens=True, clean_up_tokenization_spaces=False, **special)
        tokenizer.save_pretrained(str(folder))
    config_file = folder / "tokenizer_config.json"
    settings = parse_json(config_file.read_text(encoding="utf-8"))
    # The generic class loads tokenizer.json as written; a BertTokenizer would rebuild BERT's own pipeline.
    settings["tokenizer_class"] = "PreTrainedTokenizerFast"
    config_file.write_text(json.dumps(settings, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


# -- what the folder says about itself ------------------------------------------------------------
def differences(run: Any, config: Any) -> list[str]:
    """What a Hugging Face pipeline over the export does differently from `bertner predict`, one line each."""
    notes = []
    if config.crf:
        notes.append(f"CRF run: the pipeline takes each token's argmax and ignores the CRF's transitions "
                     f"({CRF_FILE}); decode with them as README.md in the export shows to get bertner's entities")
    elif config.constrained_decoding:
        notes.append("this run decodes with --constrained-decoding; the pipeline takes each token's argmax, "
                     "so some entities can differ")
    if run.aligner.mode == "char" and run.aligner.whitespace_tokens:
        notes.append("whitespace has a token of its own: where the model tags one at an entity's edge, the "
                     "pipeline keeps it in the entity and bertner trims it")
    if run.aligner.mode == "char" and not run.aligner.whitespace_tokens:
        notes.append("whitespace has no token: a pipeline entity's `word` leaves out whitespace inside it "
                     "(its start and end are exact)")
    if run.aligner.mode == "subword":
        notes.append("bertner drops tokens that stand for whitespace alone; the pipeline feeds them to the model")
        notes.append("a pipeline entity's `word` is the encoder tokenizer's decoding (it may lower-case or add "
                     "spaces); its start and end are exact")
    notes.append("bertner predict computes in bf16 where the hardware has it, the pipeline in fp32 unless told "
                 "otherwise: a token whose two best tags nearly tie can come out differently")
    max_chars = run.data_info.get("max_chars") or 256
    notes.append(f"long texts: bertner tags windows of at most {max_chars} characters cut at sentence ends; the "
                 f"pipeline reads up to {run.max_positions - 2} tokens at once (pass stride= for longer ones), "
                 "so on long texts the two see different context")
    return notes


CRF_DECODING = '''```python
import torch
from safetensors.torch import load_file
from transformers import AutoModelForTokenClassification, AutoTokenizer

folder = {folder!r}
tokenizer = AutoTokenizer.from_pretrained(folder)
model = AutoModelForTokenClassification.from_pretrained(folder).eval()
crf = load_file(f"{{folder}}/crf.safetensors")  # start_transitions [K], transitions [K from, K to], end_transitions [K]


def crf_entities(text):
    """(start, end, label) of each entity, decoded with the CRF's transitions (Viterbi), as bertner does."""
    encoded = tokenizer(text, return_offsets_mapping=True, return_tensors="pt")
    offsets = encoded.pop("offset_mapping")[0, 1:-1].tolist()  # the text's tokens: no [CLS], no [SEP]
    with torch.no_grad():
        emissions = model(**encoded).logits[0, 1:-1]
    score, back = crf["start_transitions"] + emissions[0], []
    for emission in emissions[1:]:
        score, best = (score[:, None] + crf["transitions"]).max(0)
        score, back = score + emission, back + [best]
    tags = [int((score + crf["end_transitions"]).argmax())]
    for best in reversed(back):
        tags.append(int(best[tags[-1]]))
    entities = []
    for (start, end), tag in zip(offsets, reversed(tags)):
        prefix, _, label = model.config.id2label[tag].partition("-")
        if prefix == "O":
            inside = False
        elif prefix == "B" or not inside or entities[-1][2] != label:
            entities.append([start, end, label])
            inside = True
        else:
            entities[-1][1] = end
    return [(start, end, label) for start, end, label in entities]
```'''


def stride(run: Any) -> int:
    """Tokens a pipeline's pieces of a long text share: a quarter of what the encoder reads at once."""
    return max(1, min(128, (run.max_positions - 2) // 4))


def text_language(run_dir: RunDir) -> str | None:
    """zh, ja or ko when the run's dev text is mostly in that script; None otherwise (or without dev text).

    Latin script is shared by too many languages to guess one: pass --language.
    """
    try:
        windows = run_dir.read_dev_predictions() or []
    except BertnerError:
        return None
    counts = {"han": 0, "kana": 0, "hangul": 0, "letters": 0}
    for window in windows:
        for char in window.text:
            if not char.isalpha():
                continue
            counts["letters"] += 1
            name = unicodedata.name(char, "")
            if name.startswith("CJK"):
                counts["han"] += 1
            elif name.startswith(("HIRAGANA", "KATAKANA")):
                counts["kana"] += 1
            elif name.startswith("HANGUL"):
                counts["hangul"] += 1
    east_asian = counts["han"] + counts["kana"] + counts["hangul"]
    if not counts["letters"] or east_asian < counts["letters"] / 2:
        return None
    if counts["hangul"] > east_asian / 2:
        return "ko"
    return "ja" if counts["kana"] > east_asian / 10 else "zh"


def card_metadata(output: Path, run: Any, config: Any, language: str | None) -> str:
    """The model card's YAML header: what the Hugging Face Hub reads to list and run the model."""
    import yaml

    summary = run.summary
    metadata: dict[str, Any] = {"library_name": "transformers", "pipeline_tag": "token-classification"}
    if language:
        metadata["language"] = language
    metadata["tags"] = ["bertner", "ner", "token-classification"]
    metadata["labels"] = list(run.labels)
    scores = [("f1", summary.best_f1), ("precision", summary.best_precision), ("recall", summary.best_recall)]
    metrics = [{"type": name, "value": round(value, 4), "name": f"dev {name} (entity-level strict, micro)"}
               for name, value in scores if value is not None]
    if metrics:
        metadata["model-index"] = [{
            "name": output.name,
            "results": [{
                "task": {"type": "token-classification", "name": "Named-entity recognition"},
                "dataset": {"name": str(config.data), "type": str(config.data), "split": "dev"},
                "metrics": metrics,
            }],
        }]
    return "---\n" + yaml.safe_dump(metadata, allow_unicode=True, sort_keys=False) + "---\n"


def model_card(run_path: Path, output: Path, run: Any, config: Any, notes: list[str], language: str | None = None) -> str:
    labels = ", ".join(run.labels)
    head = "CRF" if config.crf else "softmax"
    lines = [
        card_metadata(output, run, config, language),
        f"# {config.variant} tagger, exported by bertner",
        "",
        f"From the bertner run `{run_path}` (encoder `{run.summary.encoder or config.model}`, {head} head, "
        f"best dev F1 {run.summary.best_f1 or 0:.4f}). Labels: {labels}.",
        "",
        "A standard transformers token-classification model: it loads offline, with no custom code.",
        "",
        "```python",
        "from transformers import pipeline",
        "",
        f"tagger = pipeline(\"token-classification\", model={str(output)!r}, aggregation_strategy=\"simple\",",
        f"                  stride={stride(run)})  # longer texts in overlapping pieces, not cut off",
        "tagger(\"患者有2型糖尿病，口服二甲双胍。\")  # [{'entity_group': ..., 'word': ..., 'start': ..., 'end': ..., 'score': ...}]",
        "```",
        "",
    ]
    if run.aligner.mode == "char":
        lines += [
            "The tokenizer gives every character a token of its own, as bertner trained the model (the encoder's "
            "original tokenizer would cut Latin words and numbers into `##` pieces the model never saw). "
            "Characters that bertner reads through their lower-case or NFKC form, and whitespace, have vocabulary "
            "entries of their own whose embeddings copy the ones bertner uses.",
            "",
        ]
    lines += ["## What differs from `bertner predict`", ""] + [f"- {note}" for note in notes] + [""]
    if config.crf:
        lines += [
            "## Decoding with the CRF",
            "",
            f"`{CRF_FILE}` holds the CRF's scores (pytorch-crf's names). Viterbi over the model's logits for the "
            "text's tokens gives bertner's entities (bertner also trims whitespace at an entity's edges):",
            "",
            CRF_DECODING.format(folder=str(output)),
            "",
        ]
    return "\n".join(lines)
