#!/usr/bin/env python3
"""Generate the text front-end fixtures under tests/data/text/ (run by hand, not by CI).

    /work/refenv/venv/bin/python tests/reference/make_text_golden.py

Needs the `tokenizers` package and the chatterbox-tts 0.1.7 sources (the unpacked wheel; set
CHATTERBOX_SRC to its `chatterbox/` folder). Upstream's own `punc_norm` and `EnTokenizer` are run:
their definitions are taken from upstream's files with `ast` and executed, so the heavy imports of
those modules (torch models, librosa, ...) are not needed.

Writes:
  tokenizer.json      a ~704-id grapheme BPE in the layout of the real file: [STOP]=0, [UNK]=1,
                      [SPACE]=2, [PAD], [SEP], [CLS], [MASK], [START]=255; merges as "a b" strings
  tokenizer-c.json    byte_fallback, ignore_merges, no unk_token, a Sequence pre-tokenizer
  tokenizer-d.json    no pre-tokenizer, no unk_token, tab and newline tokens, an lstrip/rstrip
                      added token
  tokenizer-b.json    a variant that exercises the other format features: merges as ["a","b"] pairs,
                      continuing_subword_prefix, end_of_word_suffix, fuse_unk, added tokens with
                      single_word / lstrip / rstrip / normalized, an added token outside the vocab
  golden.json         for each input: upstream punc_norm output, EnTokenizer ids of that output
                      (tokenizer.json), ids of the raw input (tokenizer.json, tokenizer-b.json,
                      tokenizer-d.json: whitespace other than ' ' reaches the added-token rules)
                      and ids of the punc_norm output with tokenizer-b/c/d.json
  unicode.json        truths the C code approximates with GLib: Python's str.isspace set, Python's
                      one-character islower()/upper(), and the Rust-regex word class and whitespace
                      class as the `tokenizers` pre-tokenizers see them (probed code point by code point)
"""
import ast
import glob
import json
import os
import random
import re
import sys
import unicodedata

from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers, trainers

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "data", "text")
SRC = os.environ.get("CHATTERBOX_SRC", "/tmp/cbx/whl/chatterbox")

SPECIALS = ["[STOP]", "[UNK]", "[SPACE]", "[PAD]", "[SEP]", "[CLS]", "[MASK]"]
START_ID = 255


def load_upstream(path, names, namespace):
    """Execute only the named top-level definitions/assignments of an upstream module."""
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    keep = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name in names:
            keep.append(node)
        elif isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id in names for t in node.targets):
            keep.append(node)
    exec(compile(ast.Module(body=keep, type_ignores=[]), path, "exec"), namespace)
    missing = [n for n in names if n not in namespace]
    if missing:
        sys.exit(f"upstream {path} lacks {missing}")
    return namespace


def corpus_lines():
    lines = []
    for path in sorted(glob.glob("/usr/share/common-licenses/*")):
        if os.path.isfile(path):
            lines += open(path, encoding="utf-8", errors="replace").read().splitlines()
    # A few non-ASCII words so that some accented letters are in the vocabulary (others stay [UNK]).
    lines += ["café naïve résumé façade Straße über señor déjà vu coöperate"] * 20
    return [l for l in lines if l.strip()]


def train_main(lines):
    tok = Tokenizer(models.BPE(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.BpeTrainer(vocab_size=703, special_tokens=SPECIALS, show_progress=False)
    tok.train_from_iterator(lines, trainer)
    j = json.loads(tok.to_str())
    # Renumber: specials first in upstream's order, [START] inserted at id 255 like the real file.
    vocab = j["model"]["vocab"]
    order = SPECIALS + [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1]) if t not in SPECIALS]
    order.insert(START_ID, "[START]")
    j["model"]["vocab"] = {t: i for i, t in enumerate(order)}
    added = []
    for content in SPECIALS + ["[START]"]:
        added.append({"id": j["model"]["vocab"][content], "content": content, "single_word": False,
                      "lstrip": False, "rstrip": False, "normalized": False, "special": True})
    added.sort(key=lambda a: a["id"])
    j["added_tokens"] = added
    # The real file predates the pair format: write merges as "a b" strings.
    j["model"]["merges"] = [m if isinstance(m, str) else " ".join(m) for m in j["model"]["merges"]]
    return j


def train_variant(lines):
    tok = Tokenizer(models.BPE(unk_token="[UNK]", continuing_subword_prefix="##",
                               end_of_word_suffix="</w>", fuse_unk=True))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=SPECIALS, show_progress=False,
                                  continuing_subword_prefix="##", end_of_word_suffix="</w>")
    tok.train_from_iterator(lines, trainer)
    tok.add_special_tokens([AddedToken("[START]", special=True, normalized=False)])
    tok.add_tokens([
        AddedToken("the", single_word=True),                          # whole words only
        AddedToken("ation", lstrip=True, rstrip=True),                 # eats spaces around it
        AddedToken("Free", normalized=False),                          # matched in the first pass
        AddedToken("[SPACE]Soft", normalized=True),                    # overlaps [SPACE]: longest wins?
        AddedToken("zq", normalized=True),                             # not in the vocab: new id
    ])
    j = json.loads(tok.to_str())
    j["model"]["merges"] = [m.split(" ") if isinstance(m, str) else list(m)
                            for m in j["model"]["merges"]]
    return j


def variant_bytes(main):
    """Byte fallback over the main file: <0xNN> tokens for every byte, ignore_merges, no unk, and
    a Sequence pre-tokenizer."""
    j = json.loads(json.dumps(main))
    vocab = j["model"]["vocab"]
    for b in range(256):
        vocab.setdefault(f"<0x{b:02X}>", len(vocab))
    j["model"].update(byte_fallback=True, ignore_merges=True, unk_token=None)
    j["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [{"type": "WhitespaceSplit"},
                                                                {"type": "Whitespace"}]}
    return j


def variant_bare(main):
    """No pre-tokenizer (BPE runs over whole pieces between added tokens) and no unk_token
    (unknown characters vanish)."""
    j = json.loads(json.dumps(main))
    j["pre_tokenizer"] = None
    j["model"]["unk_token"] = None
    # Whitespace that reaches the model is visible here, so lstrip/rstrip change the ids.
    vocab = j["model"]["vocab"]
    for ws in ("\t", "\n"):
        vocab[ws] = len(vocab)
    j["added_tokens"].append({"id": vocab.get("ation", len(vocab)), "content": "ation", "single_word": False,
                              "lstrip": True, "rstrip": True, "normalized": True, "special": False})
    return j


def cases(lines):
    """Inputs: hand-written edge cases, corpus sentences and their perturbations."""
    c = [
        "", " ", "   ", "\t", "\n", "\t\n \r", "\u0085", "\u001c", "\u00a0", "\u3000 \u2003",
        "hello", "Hello", " hello", "hello world", "Hello world!", "Hello world?", "Hello world-",
        "Hello world,", "Hello world .", "Hello world ...", "Wait... what?", "Wait…what", "Well…",
        "Note: this is it", "a - b", "a-b", "x ; y", "x;y", "Em—dash", "En–dash", "a — b", "a – b",
        "He said “hi” and ‘bye’.", "It’s John’s.", "“Quoted”", "a ,b", "a , b", "a  ,  b",
        "3.14 is pi.", "1,000,000 dollars", "It costs $5.99!", "Call 555-1234 now", "The year 2024.",
        "Mr. Smith met Dr. Jones at St. Paul's.", "e.g. this, i.e. that, etc.", "J. R. R. Tolkien",
        "vs. them", "U.S.A.", "ßtraße", "ß", "ﬁne print", "ﬂ", "ǆemal", "ǅ", "ŉ", "ǰ", "ΐ", "ﬃ",
        "éclair", "über alles", "ñandú", "İstanbul", "ıdea", "ⓐ circle", "ⅰ roman", "ªb", "ͅx",
        "µ-law", "ÿes", "straße café", "Œuvre", "œuvre", "ĳssel", "ǳ",
        "I love 🐍 and 🎉!", "👍", "中文文本。", "日本語のテキスト", "한국어 텍스트", "Привет, мир!",
        "مرحبا", "שלום", "γειά σου κόσμε", "Ελλάδα", "naïve coöperation",
        "tab\tseparated\tvalues", "line one\nline two", "crlf\r\nline", "x\u0085y", "x\u001cy\u001dz",
        "x\u001ey\u001fz", "x\u2028y\u2029z", "x\u00a0y", "x\u200by", "x\u200dy", "x\u180ey",
        "x\ufeffy", "x\x0by\x0cz", "  leading and trailing  ", "\tleading tab",
        "multiple     spaces    here", "[SPACE]", "a[SPACE]b", "[UNK]", "[UNK] text", "[START]",
        "[STOP] here", "[PAD][SEP][CLS][MASK]", "[SPACE", "SPACE]", "[[SPACE]]", "[space]",
        "Free software", "the theory", "information", "zq zqzq", "Soft[SPACE]Soft",
        "!!!", "???", "?!", "...", "…", "-", ",", ".", "Hi!!!", "What?!", "Really???",
        "ends with colon:", "ends with semicolon;", "ends with dash -", "ends with em dash—",
        "ends with quote\"", "ends with paren)", "(parenthetical)", "[bracketed]", "{braced}",
        "email me at someone@example.com", "http://example.com/path?q=1&r=2", "C++ and C#",
        "100% sure", "#hashtag @mention", "a/b\\c", "x^2 + y^2 = z^2", "~tilde~", "`code`",
        "under_score and snake_case_name", "CamelCaseWord", "ALL CAPS SHOUTING", "mIxEd CaSe",
        "12345", "3rd 4th 21st", "0.5", "-7 degrees", "+44 20 7946 0958", "½ cup", "²³", "٣٤٥",
        "Ⅻ o'clock", "x\u0301y", "e\u0301", "\u0301start", "ok\u200c", "'single quotes'",
        "\"double quotes\"", "''", "\"\"", "It's a dog's life.", "rock 'n' roll",
        "The quick brown fox jumps over the lazy dog", "the quick brown fox.",
        "Zero-width joiner: 👨\u200d👩\u200d👧", "flag 🇫🇷", "skin 👋🏽", "keycap 1\ufe0f\u20e3",
        "\U0001F600", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "𝟙𝟚𝟛", "Ⓐⓑⓒ", "\u2160", "ﬀ ligature", "ǈ titlecase",
        "bell\u0007char", "del\u007fchar", "\ufffd replacement",
    ]
    random.seed(1234)
    sent = [l.strip() for l in lines if 20 < len(l.strip()) < 200]
    random.shuffle(sent)
    quotes = [("\"", "“", "”"), ("'", "‘", "’")]
    for i, s in enumerate(sent[:120]):
        v = s
        k = i % 8
        if k == 0:
            v = v.lower()
        elif k == 1:
            v = "  " + v + "\t"
        elif k == 2:
            v = v.replace(" ", " — ", 1).replace(",", ";")
        elif k == 3:
            v = "“" + v + "”"
        elif k == 4:
            v = v.replace(" ", "\n", 2) + "..."
        elif k == 5:
            v = v.rstrip(".") + " - ok"
        elif k == 6:
            v = v.replace("e", "é").replace("a", "ä")
        c.append(v)
    # Random strings over the characters and fragments that exercise every rule at once.
    pool = list("abcdefghijklmnopqrstuvwxyzAEIOUXYZ  .,!?;:-'\"()[]{}0123456789\t\n") + [
        "\u2014", "\u2013", "\u2026", "\u201c", "\u201d", "\u2018", "\u2019", "\u00e9", "\u00df",
        "\ufb01", "\u4e2d", "\U0001F642", "\u0085", "\u00a0", "\u001c", "\u0301", "...", " - ",
        "[SPACE]", "[UNK]", "[START", "ation", " ation ", "\tation\n", "\u00a0the\u00a0", "the", "Free", "zq", "3.14", "Mr. "]
    for _ in range(100):
        c.append("".join(random.choice(pool) for _ in range(random.randint(1, 40))))
    # A very long input (well over 5000 characters) and a long word.
    c.append(" ".join(sent[120:220]))
    c.append("supercalifragilistic" * 60)
    return c


def probe_unicode():
    ws = pre_tokenizers.Whitespace()
    wss = pre_tokenizers.WhitespaceSplit()
    word, rs_space, py_space, lower, unassigned = [], [], [], [], []
    for cp in range(0x110000):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        ch = chr(cp)
        if unicodedata.category(ch) == "Cn":
            unassigned.append(cp)
        if ch.isspace():
            py_space.append(cp)
        if ch.islower():
            lower.append([cp, ch.upper()])
        if not wss.pre_tokenize_str("a" + ch + "a")[0][0] == "a" + ch + "a":
            rs_space.append(cp)
        if [p for p, _ in ws.pre_tokenize_str("a" + ch)] == ["a" + ch]:
            word.append(cp)

    def ranges(cps):
        out = []
        for cp in cps:
            if out and out[-1][1] == cp - 1:
                out[-1][1] = cp
            else:
                out.append([cp, cp])
        return out

    return {"python_unicode": unicodedata.unidata_version,
            "python_unassigned": ranges(unassigned),
            "python_space": py_space, "python_lower_upper": lower,
            "rust_word": ranges(word), "rust_space": ranges(rs_space)}


def main():
    ns = load_upstream(os.path.join(SRC, "models", "tokenizers", "tokenizer.py"),
                       ["SOT", "EOT", "UNK", "SPACE", "SPECIAL_TOKENS", "EnTokenizer"],
                       {"Tokenizer": Tokenizer, "logger": None})
    punc_norm = load_upstream(os.path.join(SRC, "tts.py"), ["punc_norm"], {})["punc_norm"]
    EnTokenizer = ns["EnTokenizer"]

    lines = corpus_lines()
    os.makedirs(OUT, exist_ok=True)
    paths = {}
    main_json = train_main(lines)
    for name, j in (("tokenizer.json", main_json), ("tokenizer-b.json", train_variant(lines)),
                    ("tokenizer-c.json", variant_bytes(main_json)),
                    ("tokenizer-d.json", variant_bare(main_json))):
        paths[name] = os.path.join(OUT, name)
        with open(paths[name], "w", encoding="utf-8") as f:
            json.dump(j, f, ensure_ascii=False, indent=1)
    tok_a = EnTokenizer(paths["tokenizer.json"])
    tok_b = EnTokenizer(paths["tokenizer-b.json"])
    tok_c = EnTokenizer(paths["tokenizer-c.json"])
    tok_d = EnTokenizer(paths["tokenizer-d.json"])
    va = tok_a.tokenizer.get_vocab()
    assert va["[STOP]"] == 0 and va["[UNK]"] == 1 and va["[SPACE]"] == 2 and va["[START]"] == START_ID

    out = []
    for text in cases(lines):
        norm = punc_norm(text)
        out.append({"input": text, "norm": norm, "ids": tok_a.encode(norm),
                    "raw_ids": tok_a.encode(text), "ids_b": tok_b.encode(norm),
                    "raw_ids_b": tok_b.encode(text),
                    "ids_c": tok_c.encode(norm), "ids_d": tok_d.encode(norm),
                    "raw_ids_d": tok_d.encode(text)})
    with open(os.path.join(OUT, "golden.json"), "w", encoding="utf-8") as f:
        json.dump({"generator": "tests/reference/make_text_golden.py",
                   "tokenizers": __import__("tokenizers").__version__,
                   "vocab_size": tok_a.tokenizer.get_vocab_size(),
                   "vocab_size_b": tok_b.tokenizer.get_vocab_size(),
                   "vocab_size_c": tok_c.tokenizer.get_vocab_size(),
                   "cases": out}, f, ensure_ascii=False, separators=(",", ":"))
    with open(os.path.join(OUT, "unicode.json"), "w", encoding="utf-8") as f:
        json.dump(probe_unicode(), f, separators=(",", ":"))
    print(f"{len(out)} cases; vocab {tok_a.tokenizer.get_vocab_size()} / "
          f"{tok_b.tokenizer.get_vocab_size()}")


if __name__ == "__main__":
    main()
