"""Text classifiers of seeds 001 (AG News), 002 (IMDB) and 003 (fastai IMDB), and the character-level
LSTM of seed 004, with a switch for the recurrent layers (rnn="fusedrnn" or "torch")."""
import glob
import os
import random
import sysconfig

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from .common import Task, rnn_classes
from .text import Vocab, classification_batches, read_ag_news, read_imdb, tokenize


# -- seed 001: AG News ---------------------------------------------------------------------------
class RNNClassifier(nn.Module):
    def __init__(self, vocab_size, embed_dim, hidden_dim, num_class, rnn="fusedrnn"):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_dim)
        self.rnn = rnn_classes(rnn).RNN(embed_dim, hidden_dim, batch_first=True)
        self.fc = nn.Linear(hidden_dim, num_class)

    def forward(self, x):
        x, h = self.rnn(self.embedding(x))
        return self.fc(x.mean(dim=1))


class LSTMClassifier(nn.Module):
    def __init__(self, vocab_size, embed_dim, hidden_dim, num_class, rnn="fusedrnn"):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_dim)
        self.embedding.weight.data = torch.randn_like(self.embedding.weight.data) - 0.5
        self.rnn = rnn_classes(rnn).LSTM(embed_dim, hidden_dim, batch_first=True)
        self.fc = nn.Linear(hidden_dim, num_class)

    def forward(self, x):
        x, (h, c) = self.rnn(self.embedding(x))
        return self.fc(h[-1])


class LSTMPackClassifier(LSTMClassifier):
    def forward(self, x, lengths):
        packed = pack_padded_sequence(self.embedding(x), lengths, batch_first=True, enforce_sorted=False)
        packed, (h, c) = self.rnn(packed)
        x, _ = pad_packed_sequence(packed, batch_first=True)
        return self.fc(h[-1])


# -- seed 002: IMDB ------------------------------------------------------------------------------
class VanillaRNN(nn.Module):
    def __init__(self, input_dim, embedding_dim, hidden_dim, output_dim, rnn="fusedrnn"):
        super().__init__()
        self.embedding = nn.Embedding(input_dim, embedding_dim)
        self.rnn = rnn_classes(rnn).RNN(embedding_dim, hidden_dim)
        self.fc = nn.Linear(hidden_dim, output_dim)

    def forward(self, text):
        output, hidden = self.rnn(self.embedding(text))
        return self.fc(hidden.squeeze(0))


class GRUSentiment(nn.Module):
    """Embedding -> dropout -> packed 2-layer bidirectional GRU -> both final states -> dropout -> Linear."""

    def __init__(self, input_dim, embedding_dim, pad_index, hidden_dim, output_dim, num_layers, bidirectional,
                 dropout, rnn="fusedrnn"):
        super().__init__()
        self.embedding = nn.Embedding(input_dim, embedding_dim, padding_idx=pad_index)
        self.rnn = rnn_classes(rnn).GRU(embedding_dim, hidden_dim, num_layers=num_layers,
                                        bidirectional=bidirectional, dropout=dropout)
        self.fc = nn.Linear(hidden_dim * 2, output_dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, text, text_lengths):
        embedded = self.dropout(self.embedding(text))
        packed = pack_padded_sequence(embedded, text_lengths.cpu(), enforce_sorted=False)
        _, hidden = self.rnn(packed)
        return self.fc(self.dropout(torch.cat((hidden[-2], hidden[-1]), dim=1)))


def predict_sentiment(model, vocab, sentence, device="cpu"):
    """Probability that `sentence` is positive, from a GRUSentiment model."""
    model.eval()
    ids = vocab(tokenize(sentence)) or [vocab.unk]
    x = torch.tensor(ids, device=device).unsqueeze(1)
    with torch.no_grad():
        return torch.sigmoid(model(x, torch.tensor([len(ids)]))).item()


# -- seed 003: fastai TextClassifier variants ------------------------------------------------------
class TextClassifier(nn.Module):
    """Embedding -> recurrent layer (batch_first) -> Linear(., 10) -> Linear(10, 2) on the final state."""

    def __init__(self, vocab_size, hidden_size, kind="rnn", rnn="fusedrnn"):
        super().__init__()
        layers = rnn_classes(rnn)
        self.kind = kind
        self.emb = nn.Embedding(vocab_size, hidden_size)
        if kind == "birnn":
            self.rnn = layers.RNN(hidden_size, hidden_size, bidirectional=True, batch_first=True)
        else:
            self.rnn = {"rnn": layers.RNN, "lstm": layers.LSTM, "gru": layers.GRU}[kind](
                hidden_size, hidden_size, batch_first=True)
        self.fc1 = nn.Linear(hidden_size * (2 if kind == "birnn" else 1), 10)
        self.fc2 = nn.Linear(10, 2)

    def forward(self, x):
        state = self.rnn(self.emb(x))[1]
        h = state[0] if self.kind == "lstm" else state
        h = torch.cat((h[0], h[1]), dim=-1) if self.kind == "birnn" else h[-1]
        return self.fc2(self.fc1(h))


# -- seed 004: character-level LSTM ---------------------------------------------------------------
class CharLSTM(nn.Module):
    def __init__(self, n_chars, n_hidden=128, n_layers=4, rnn="fusedrnn"):
        super().__init__()
        self.n_chars = n_chars
        self.lstm = rnn_classes(rnn).LSTM(n_chars, n_hidden, n_layers, batch_first=True)
        self.fc = nn.Linear(n_hidden, n_chars)

    def forward(self, x, hidden=None):
        out, hidden = self.lstm(F.one_hot(x, self.n_chars).to(self.fc.weight.dtype), hidden)
        return self.fc(out), hidden


def stdlib_text(max_chars=1_000_000):
    """Python's standard library sources, concatenated in a fixed order (every machine has them)."""
    files = sorted(glob.glob(os.path.join(sysconfig.get_paths()["stdlib"], "*.py")))
    parts, total = [], 0
    for path in files:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
        parts.append(text)
        total += len(text)
        if total >= max_chars:
            break
    return "".join(parts)[:max_chars]


def char_data(text, seq_len=100, bs=32, valid_fraction=0.1):
    chars = sorted(set(text))
    stoi = {c: i for i, c in enumerate(chars)}
    ids = torch.tensor([stoi[c] for c in text])
    n = (len(ids) - 1) // seq_len
    x = ids[:n * seq_len].view(n, seq_len)
    y = ids[1:n * seq_len + 1].view(n, seq_len)
    cut = int(n * (1 - valid_fraction))

    def batches(xs, ys):
        return [((xs[k:k + bs],), ys[k:k + bs]) for k in range(0, len(xs) - bs + 1, bs)]

    return chars, batches(x[:cut], y[:cut]), batches(x[cut:], y[cut:])


def sample(model, chars, prime="def ", length=200, temperature=0.8, seed=0):
    """Generate `length` characters after `prime`, one at a time."""
    stoi = {c: i for i, c in enumerate(chars)}
    gen = torch.Generator().manual_seed(seed)
    device = model.fc.weight.device
    model.eval()
    out, hidden = list(prime), None
    x = torch.tensor([[stoi.get(c, 0) for c in prime]], device=device)
    with torch.no_grad():
        for _ in range(length):
            logits, hidden = model(x, hidden)
            probs = torch.softmax(logits[0, -1].float().cpu() / temperature, dim=-1)
            nxt = int(torch.multinomial(probs, 1, generator=gen))
            out.append(chars[nxt])
            x = torch.tensor([[nxt]], device=device)
    return "".join(out)


# -- tasks ---------------------------------------------------------------------------------------
def _ce(out, y):
    return F.cross_entropy(out.reshape(-1, out.size(-1)), y.reshape(-1))


def _acc(out, y):
    pred = out.reshape(-1, out.size(-1)).argmax(-1)
    return int((pred == y.reshape(-1)).sum()), y.numel()


def _bce(out, y):
    return F.binary_cross_entropy_with_logits(out.squeeze(-1), y.to(out.dtype))


def _bce_acc(out, y):
    return int(((out.squeeze(-1) > 0).long() == y).sum()), y.numel()


def _agnews(with_lengths):
    def data(data_dir=None):
        train, test = read_ag_news(data_dir, "train"), read_ag_news(data_dir, "test")
        vocab = Vocab(tokenize(t) for _, t in train)
        return (classification_batches(train, vocab, 16, 1, with_lengths=with_lengths),
                classification_batches(test, vocab, 16, 1, with_lengths=with_lengths, shuffle=False), vocab)
    return data


def _imdb(batch_first, with_lengths, bs):
    def data(data_dir=None):
        items = read_imdb(data_dir, "train")
        random.Random(0).shuffle(items)
        cut = int(len(items) * 0.7)
        vocab = Vocab((tokenize(t) for _, t in items[:cut]), min_freq=10, specials=("<unk>", "<PAD>"))
        kw = dict(batch_first=batch_first, with_lengths=with_lengths)
        return (classification_batches(items[:cut], vocab, bs, 1, **kw),
                classification_batches(items[cut:], vocab, bs, 1, shuffle=False, **kw), vocab)
    return data


def _vocab_task(name, description, make, data, loss, acc, epochs, lr, clip=None):
    """A task whose model size depends on the vocabulary its data builds."""
    cache = {}

    def load(data_dir=None):
        train, valid, vocab = data(data_dir)
        cache["vocab"] = vocab
        return train, valid

    def build(rnn, device="cpu"):
        if "vocab" not in cache:
            raise RuntimeError(f"{name}: load the data first (its vocabulary sizes the model)")
        return make(len(cache["vocab"]), rnn).to(device)

    task = Task(name, description, build, load, loss, acc, epochs, lr, clip=clip)
    task.extra["cache"] = cache
    return task


def _char_task():
    cache = {}

    def load(data_dir=None):
        text = stdlib_text() if not data_dir else _read_text_folder(data_dir)
        chars, train, valid = char_data(text)
        cache["chars"] = chars
        return train, valid

    def build(rnn, device="cpu"):
        return CharLSTM(len(cache["chars"]), 128, 4, rnn).to(device)

    def loss(out, y):
        return _ce(out[0], y)

    def acc(out, y):
        return _acc(out[0], y)

    task = Task("char_lstm", "4 x 128 LSTM on characters (default corpus: Python's stdlib sources)", build, load,
                loss, acc, 8, 1e-2, clip=5.0)
    task.extra["cache"] = cache
    return task


def _read_text_folder(folder):
    paths = sorted(p for p in glob.glob(os.path.join(folder, "**", "*"), recursive=True) if os.path.isfile(p))
    if not paths:
        raise FileNotFoundError(f"no text files under {folder!r}")
    texts = []
    for p in paths:
        with open(p, encoding="utf-8", errors="replace") as f:
            texts.append(f.read())
    return "".join(texts)


CLASSIFIER_MODELS = {t.name: t for t in [
    _vocab_task("agnews_rnn", "AG News: Embedding(64) -> RNN(32) -> mean -> Linear",
                lambda v, rnn: RNNClassifier(v, 64, 32, 4, rnn), _agnews(False), _ce, _acc, 1, 1e-3),
    _vocab_task("agnews_lstm", "AG News: Embedding(64) -> LSTM(32) -> Linear on h[-1]",
                lambda v, rnn: LSTMClassifier(v, 64, 32, 4, rnn), _agnews(False), _ce, _acc, 1, 1e-3),
    _vocab_task("agnews_lstm_packed", "AG News: the LSTM classifier on packed sequences",
                lambda v, rnn: LSTMPackClassifier(v, 64, 32, 4, rnn), _agnews(True), _ce, _acc, 1, 1e-3),
    _vocab_task("imdb_vanilla_rnn", "IMDB: Embedding(100) -> RNN(256) -> Linear (BCE)",
                lambda v, rnn: VanillaRNN(v, 100, 256, 1, rnn), _imdb(False, False, 64), _bce, _bce_acc, 5, 1e-3),
    _vocab_task("imdb_gru", "IMDB: packed 2-layer bidirectional GRU(256), dropout 0.5 (BCE)",
                lambda v, rnn: GRUSentiment(v, 100, 1, 256, 1, 2, True, 0.5, rnn), _imdb(False, True, 64), _bce,
                _bce_acc, 5, 1e-3),
] + [
    _vocab_task(f"imdb_fastai_{kind}", f"IMDB (fastai): Embedding(100) -> {kind} -> Linear(10) -> Linear(2)",
                (lambda k: lambda v, rnn: TextClassifier(v, 100, k, rnn))(kind), _imdb(True, False, 64), _ce, _acc,
                10, 1e-3)
    for kind in ("rnn", "birnn", "lstm", "gru")
] + [_char_task()]}
