"""Text data for the classifiers: AG News (seed 001) and IMDB (seeds 002, 003), read from a local
path in their published formats, with a tokenizer, a vocabulary, a bucketing sampler and padding.

Neither data set can be downloaded by fusedrnn: point `--data` at a copy.
  AG News: a folder with train.csv and test.csv, rows `class_index,title,description` (class 1-4).
  IMDB:    the aclImdb folder (or its parent), with train/{pos,neg}/*.txt and test/{pos,neg}/*.txt.
"""
import collections
import csv
import os
import random
import re

import torch

_PATTERNS = [(re.compile(p), r) for p, r in [
    (r"<br\s*/?>", " "), (r"\'", " '  "), (r"\"", ""), (r"\.", " . "), (r",", " , "), (r"\(", " ( "),
    (r"\)", " ) "), (r"!", " ! "), (r"\?", " ? "), (r"\;", " "), (r"\:", " "), (r"\s+", " ")]]


def tokenize(text):
    """Lower-case words with punctuation split off (torchtext's basic_english rules)."""
    text = text.lower()
    for pattern, repl in _PATTERNS:
        text = pattern.sub(repl, text)
    return text.split()


class Vocab:
    """Tokens seen at least min_freq times, most frequent first, after the specials; unknown tokens
    map to the first special."""

    def __init__(self, token_lists, min_freq=1, specials=("<unk>", "<pad>")):
        counts = collections.Counter(t for tokens in token_lists for t in tokens)
        words = sorted((w for w, c in counts.items() if c >= min_freq and w not in specials),
                       key=lambda w: (-counts[w], w))
        self.itos = list(specials) + words
        self.stoi = {w: i for i, w in enumerate(self.itos)}
        self.unk = 0

    def __len__(self):
        return len(self.itos)

    def __call__(self, tokens):
        return [self.stoi.get(t, self.unk) for t in tokens]


def _missing(what, path, layout):
    where = f"not found at {path!r}" if path else "needs a data folder (none given)"
    return FileNotFoundError(f"{what} {where}. fusedrnn cannot download it: put {layout} in a folder "
                             f"and pass that folder with --data.")


def read_ag_news(folder, split):
    """[(label 0-3, text)] from AG News' train.csv / test.csv (rows class_index,title,description)."""
    path = os.path.join(folder or "", f"{split}.csv")
    if not folder or not os.path.isfile(path):
        raise _missing("AG News", folder, "train.csv and test.csv (rows class_index,title,description)")
    with open(path, newline="", encoding="utf-8") as f:
        return [(int(row[0]) - 1, row[1] + " " + row[2]) for row in csv.reader(f) if row]


def read_imdb(folder, split):
    """[(label 0 neg / 1 pos, text)] from the aclImdb layout: {split}/{pos,neg}/*.txt."""
    root = folder or ""
    if os.path.isdir(os.path.join(root, "aclImdb")):
        root = os.path.join(root, "aclImdb")
    items = []
    for label, sub in ((0, "neg"), (1, "pos")):
        d = os.path.join(root, split, sub)
        if not folder or not os.path.isdir(d):
            raise _missing("IMDB", folder, "the aclImdb folder (train/pos, train/neg, test/pos, test/neg)")
        for name in sorted(os.listdir(d)):
            if name.endswith(".txt"):
                with open(os.path.join(d, name), encoding="utf-8") as f:
                    items.append((label, f.read()))
    return items


def bucket_batches(lengths, bs, pool=100, seed=0, shuffle=True):
    """Batches of indices: shuffled, cut into pools of `pool` batches, each pool sorted by length so that a
    batch holds sequences of similar length (the seed's BucketSampler)."""
    order = list(range(len(lengths)))
    rng = random.Random(seed)
    if shuffle:
        rng.shuffle(order)
    batches = []
    for start in range(0, len(order), bs * pool):
        chunk = sorted(order[start:start + bs * pool], key=lambda i: lengths[i])
        batches += [chunk[k:k + bs] for k in range(0, len(chunk), bs)]
    if shuffle:
        rng.shuffle(batches)
    return batches


def pad(sequences, pad_index, batch_first=True):
    """(padded LongTensor, lengths LongTensor on the CPU) of a list of token-index lists."""
    lengths = torch.tensor([max(len(s), 1) for s in sequences])
    out = torch.full((len(sequences), int(lengths.max())), pad_index, dtype=torch.long)
    for i, s in enumerate(sequences):
        out[i, :len(s)] = torch.tensor(s[:len(s)] or [pad_index], dtype=torch.long)
    return (out if batch_first else out.t().contiguous()), lengths


def classification_batches(items, vocab, bs, pad_index, batch_first=True, with_lengths=False, max_len=None,
                           seed=0, shuffle=True):
    """[(inputs, labels)]: inputs (x,) or (x, lengths); x padded with pad_index."""
    encoded = [vocab(tokenize(text))[:max_len] for _, text in items]
    labels = [label for label, _ in items]
    out = []
    for idx in bucket_batches([len(e) for e in encoded], bs, seed=seed, shuffle=shuffle):
        x, lengths = pad([encoded[i] for i in idx], pad_index, batch_first)
        y = torch.tensor([labels[i] for i in idx])
        out.append(((x, lengths) if with_lengths else (x,), y))
    return out
