"""Reference vectors for drugsync's embedded model (all-MiniLM-L6-v2), made
apart from the Rust code: a BERT WordPiece tokenizer written from the
original BERT recipe, and a numpy forward pass over the same safetensors,
then mean pooling over the attention mask and L2 normalisation (what the
model's 1_Pooling/config.json and modules.json say).

Nothing here is drugsync's: not candle, not the `tokenizers` library.

    python3 -m venv /tmp/ref && /tmp/ref/bin/pip install numpy
    /tmp/ref/bin/python tests/data/minilm/reference.py .testenv/models/all-MiniLM-L6-v2 \
        > tests/data/minilm/reference.json

The texts are fixed below; `max_seq_length` (256 tokens, [CLS] and [SEP]
included) is read from the model's sentence_bert_config.json, and the last
text is longer than that, so the cut is part of what is compared.
"""

import json
import math
import struct
import sys
import unicodedata

import numpy as np

TEXTS = [
    "LIPITOR 10 MG TABLET | atorvastatin calcium | HMG CoA reductase inhibitors | oral tablet",
    "cholesterol lowering tablet",
    "Amoxicillin 250 mg/5 mL oral suspension; penicillin antibiotic (Rx only)",
    "Insulin glargine 100 unit/mL subcutaneous solution — long-acting insulin, Café-Ödem",
    "",
    " ".join(f"word{i} metoprolol succinate extended-release" for i in range(120)),
]


def load_safetensors(path):
    with open(path, "rb") as f:
        size = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(size))
        data = f.read()
    tensors = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        start, end = meta["data_offsets"]
        dtype = {"F32": np.float32, "I64": np.int64}[meta["dtype"]]
        tensors[name] = np.frombuffer(data[start:end], dtype=dtype).reshape(meta["shape"])
    return tensors


class WordPiece:
    """BERT's uncased tokenizer: clean, split CJK, lowercase and strip
    accents, split on whitespace and punctuation, then greedy longest-match
    word pieces with a '##' prefix (a word over 100 characters is [UNK])."""

    def __init__(self, vocab):
        self.vocab = vocab

    @staticmethod
    def is_punct(ch):
        cp = ord(ch)
        if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
            return True
        return unicodedata.category(ch).startswith("P")

    @staticmethod
    def is_cjk(cp):
        return any(a <= cp <= b for a, b in [(0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
                                              (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F)])

    def basic(self, text):
        out = []
        for ch in text:
            cp = ord(ch)
            if cp == 0 or cp == 0xFFFD or (unicodedata.category(ch).startswith("C") and ch not in "\t\n\r"):
                continue
            if ch in " \t\n\r" or unicodedata.category(ch) == "Zs":
                out.append(" ")
            elif self.is_cjk(cp):
                out.append(f" {ch} ")
            else:
                out.append(ch)
        text = "".join(out).lower()
        text = "".join(c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn")
        words = []
        for token in text.split():
            current = ""
            for ch in token:
                if self.is_punct(ch):
                    if current:
                        words.append(current)
                    words.append(ch)
                    current = ""
                else:
                    current += ch
            if current:
                words.append(current)
        return words

    def ids(self, text):
        out = []
        for word in self.basic(text):
            if len(word) > 100:
                out.append(self.vocab["[UNK]"])
                continue
            start, pieces = 0, []
            while start < len(word):
                end = len(word)
                found = None
                while start < end:
                    piece = word[start:end] if start == 0 else "##" + word[start:end]
                    if piece in self.vocab:
                        found = piece
                        break
                    end -= 1
                if found is None:
                    pieces = [self.vocab["[UNK]"]]
                    break
                pieces.append(self.vocab[found])
                start = end
            out.extend(pieces)
        return out


def layer_norm(x, w, b, eps):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * w + b


def gelu(x):
    erf = np.vectorize(math.erf)
    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


def forward(t, config, ids):
    ids = np.array(ids)
    n = len(ids)
    x = t["embeddings.word_embeddings.weight"][ids] + t["embeddings.position_embeddings.weight"][:n] \
        + t["embeddings.token_type_embeddings.weight"][0]
    eps = config["layer_norm_eps"]
    x = layer_norm(x.astype(np.float64), t["embeddings.LayerNorm.weight"], t["embeddings.LayerNorm.bias"], eps)
    heads = config["num_attention_heads"]
    d = config["hidden_size"] // heads
    for i in range(config["num_hidden_layers"]):
        p = f"encoder.layer.{i}."
        lin = lambda h, name: h @ t[p + name + ".weight"].T.astype(np.float64) + t[p + name + ".bias"]
        q = lin(x, "attention.self.query").reshape(n, heads, d).transpose(1, 0, 2)
        k = lin(x, "attention.self.key").reshape(n, heads, d).transpose(1, 0, 2)
        v = lin(x, "attention.self.value").reshape(n, heads, d).transpose(1, 0, 2)
        scores = q @ k.transpose(0, 2, 1) / math.sqrt(d)
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        scores /= scores.sum(-1, keepdims=True)
        context = (scores @ v).transpose(1, 0, 2).reshape(n, heads * d)
        x = layer_norm(lin(context, "attention.output.dense") + x, t[p + "attention.output.LayerNorm.weight"],
                       t[p + "attention.output.LayerNorm.bias"], eps)
        h = gelu(lin(x, "intermediate.dense"))
        x = layer_norm(lin(h, "output.dense") + x, t[p + "output.LayerNorm.weight"], t[p + "output.LayerNorm.bias"], eps)
    # No padding in a single text: every token counts in the mean.
    pooled = x.mean(0)
    return pooled / np.linalg.norm(pooled)


def main(model_dir):
    config = json.load(open(f"{model_dir}/config.json"))
    max_len = json.load(open(f"{model_dir}/sentence_bert_config.json"))["max_seq_length"]
    vocab = json.load(open(f"{model_dir}/tokenizer.json"))["model"]["vocab"]
    tensors = load_safetensors(f"{model_dir}/model.safetensors")
    tokenizer = WordPiece(vocab)
    out = []
    for text in TEXTS:
        pieces = tokenizer.ids(text)
        ids = [vocab["[CLS]"]] + pieces[: max_len - 2] + [vocab["[SEP]"]]
        vector = forward(tensors, config, ids)
        out.append({"text": text, "tokens": len(ids), "cut": len(pieces) > max_len - 2, "ids": ids,
                    "vector": [round(float(x), 7) for x in vector]})
    json.dump({"model": "sentence-transformers/all-MiniLM-L6-v2", "max_seq_length": max_len, "texts": out}, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main(sys.argv[1])
