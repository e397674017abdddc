"""Human numbers language models (seed 000, the fastai book's chapter 12), LMModel1 to LMModel7.

The data is generated exactly as fastai's HUMAN_NUMBERS files: train.txt holds "one" .. "seven
thousand nine hundred ninety nine", valid.txt "eight thousand one" .. "nine thousand nine hundred
ninety nine" (8000 is in neither); the seed joins all lines with ' . ', splits on spaces and
numericalizes by first appearance: 9,998 lines, 63,095 tokens, 30 words.
"""
import torch
import torch.nn.functional as F
from torch import nn

from .common import Task, rnn_classes

_UNITS = ["", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
          "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
_TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]


def number_words(n):
    """English words for 1 <= n <= 9999, without 'and' ("two hundred twenty nine")."""
    if not 1 <= n <= 9999:
        raise ValueError(f"human numbers cover 1..9999, got {n}")
    parts = []
    if n >= 1000:
        parts += [_UNITS[n // 1000], "thousand"]
        n %= 1000
    if n >= 100:
        parts += [_UNITS[n // 100], "hundred"]
        n %= 100
    if n >= 20:
        parts.append(_TENS[n // 10])
        n %= 10
    if n:
        parts.append(_UNITS[n])
    return " ".join(parts)


def human_numbers_lines():
    """(train lines, valid lines) as in fastai's train.txt and valid.txt."""
    return [number_words(n) for n in range(1, 8000)], [number_words(n) for n in range(8001, 10000)]


def human_numbers_tokens():
    """(tokens, vocab, nums): all lines joined with ' . ', split on spaces, numericalized by first appearance."""
    train, valid = human_numbers_lines()
    tokens = " . ".join(train + valid).split(" ")
    vocab = list(dict.fromkeys(tokens))
    index = {w: i for i, w in enumerate(vocab)}
    return tokens, vocab, [index[t] for t in tokens]


def group_chunks(ds, bs):
    """Reorder samples so that row j of batch i+1 continues row j of batch i (the seed's group_chunks)."""
    m = len(ds) // bs
    return [ds[i + m * j] for i in range(m) for j in range(bs)]


def batches(samples, bs, drop_last):
    out = []
    for start in range(0, len(samples), bs):
        chunk = samples[start:start + bs]
        if drop_last and len(chunk) < bs:
            break
        out.append(((torch.stack([x for x, _ in chunk]),), torch.stack([y for _, y in chunk])))
    return out


def three_token_data(grouped, bs=64):
    """Sequences of 3 tokens predicting the next (21,031 samples, 80/20 split, no shuffle)."""
    _, _, nums = human_numbers_tokens()
    nums = torch.tensor(nums)
    seqs = [(nums[i:i + 3], nums[i + 3]) for i in range(0, len(nums) - 4, 3)]
    cut = int(len(seqs) * 0.8)
    if grouped:
        return batches(group_chunks(seqs[:cut], bs), bs, True), batches(group_chunks(seqs[cut:], bs), bs, True)
    return batches(seqs[:cut], bs, False), batches(seqs[cut:], bs, False)


def sixteen_token_data(bs=64, sl=16):
    """Sequences of sl tokens predicting every next token, grouped in chunks, last partial batch dropped."""
    _, _, nums = human_numbers_tokens()
    nums = torch.tensor(nums)
    seqs = [(nums[i:i + sl], nums[i + 1:i + sl + 1]) for i in range(0, len(nums) - sl - 1, sl)]
    cut = int(len(seqs) * 0.8)
    return batches(group_chunks(seqs[:cut], bs), bs, True), batches(group_chunks(seqs[cut:], bs), bs, True)


# -- models, as the seed writes them --------------------------------------------------------------
class LMModel1(nn.Module):
    def __init__(self, vocab_sz, n_hidden):
        super().__init__()
        self.i_h = nn.Embedding(vocab_sz, n_hidden)
        self.h_h = nn.Linear(n_hidden, n_hidden)
        self.h_o = nn.Linear(n_hidden, vocab_sz)

    def forward(self, x):
        h = F.relu(self.h_h(self.i_h(x[:, 0])))
        h = h + self.i_h(x[:, 1])
        h = F.relu(self.h_h(h))
        h = h + self.i_h(x[:, 2])
        h = F.relu(self.h_h(h))
        return self.h_o(h)


class LMModel2(LMModel1):
    def forward(self, x):
        h = 0
        for i in range(3):
            h = h + self.i_h(x[:, i])
            h = F.relu(self.h_h(h))
        return self.h_o(h)


class LMModel3(LMModel1):
    def __init__(self, vocab_sz, n_hidden):
        super().__init__(vocab_sz, n_hidden)
        self.h = 0

    def forward(self, x):
        for i in range(3):
            self.h = self.h + self.i_h(x[:, i])
            self.h = F.relu(self.h_h(self.h))
        out = self.h_o(self.h)
        self.h = self.h.detach()
        return out

    def reset(self):
        self.h = 0


class LMModel4(LMModel3):
    def forward(self, x):
        outs = []
        for i in range(x.shape[1]):
            self.h = self.h + self.i_h(x[:, i])
            self.h = F.relu(self.h_h(self.h))
            outs.append(self.h_o(self.h))
        self.h = self.h.detach()
        return torch.stack(outs, dim=1)


class LMModel5(nn.Module):
    def __init__(self, vocab_sz, n_hidden, n_layers, bs, rnn="fusedrnn"):
        super().__init__()
        self.i_h = nn.Embedding(vocab_sz, n_hidden)
        self.rnn = rnn_classes(rnn).RNN(n_hidden, n_hidden, n_layers, batch_first=True)
        self.h_o = nn.Linear(n_hidden, vocab_sz)
        self.h = torch.zeros(n_layers, bs, n_hidden)

    def forward(self, x):
        res, h = self.rnn(self.i_h(x), self.h)
        self.h = h.detach()
        return self.h_o(res)

    def reset(self):
        self.h = torch.zeros_like(self.h)


class LMModel6(nn.Module):
    def __init__(self, vocab_sz, n_hidden, n_layers, bs, rnn="fusedrnn"):
        super().__init__()
        self.i_h = nn.Embedding(vocab_sz, n_hidden)
        self.rnn = rnn_classes(rnn).LSTM(n_hidden, n_hidden, n_layers, batch_first=True)
        self.h_o = nn.Linear(n_hidden, vocab_sz)
        self.h = [torch.zeros(n_layers, bs, n_hidden) for _ in range(2)]

    def forward(self, x):
        res, h = self.rnn(self.i_h(x), self.h)
        self.h = [h_.detach() for h_ in h]
        return self.h_o(res)

    def reset(self):
        self.h = [torch.zeros_like(h) for h in self.h]


class LMModel7(nn.Module):
    """LSTM with dropout, weight tying (h_o.weight = i_h.weight); trained with AR/TAR and weight decay."""

    def __init__(self, vocab_sz, n_hidden, n_layers, p, bs, rnn="fusedrnn"):
        super().__init__()
        self.i_h = nn.Embedding(vocab_sz, n_hidden)
        self.rnn = rnn_classes(rnn).LSTM(n_hidden, n_hidden, n_layers, batch_first=True)
        self.drop = nn.Dropout(p)
        self.h_o = nn.Linear(n_hidden, vocab_sz)
        self.h_o.weight = self.i_h.weight
        self.h = [torch.zeros(n_layers, bs, n_hidden) for _ in range(2)]

    def forward(self, x):
        raw, h = self.rnn(self.i_h(x), self.h)
        out = self.drop(raw)
        self.h = [h_.detach() for h_ in h]
        return self.h_o(out), raw, out

    def reset(self):
        self.h = [torch.zeros_like(h) for h in self.h]


def _move_state(model, device):
    """The seed keeps its hidden state as plain tensors; put them on the model's device."""
    h = getattr(model, "h", None)
    if isinstance(h, torch.Tensor):
        model.h = h.to(device)
    elif isinstance(h, list):
        model.h = [t.to(device) for t in h]


# -- losses and metrics ------------------------------------------------------------------------
def flat_loss(out, y):
    out = out[0] if isinstance(out, tuple) else out
    return F.cross_entropy(out.reshape(-1, out.size(-1)), y.reshape(-1))


def ar_tar_loss(out, y, alpha=2.0, beta=1.0):
    """fastai's RNNRegularizer defaults: AR on the dropped output, TAR on the raw output."""
    pred, raw, dropped = out
    loss = flat_loss(pred, y)
    loss = loss + alpha * dropped.float().pow(2).mean()
    return loss + beta * (raw[:, 1:] - raw[:, :-1]).float().pow(2).mean()


def flat_accuracy(out, y):
    out = out[0] if isinstance(out, tuple) else out
    pred = out.reshape(-1, out.size(-1)).argmax(-1)
    return int((pred == y.reshape(-1)).sum()), y.numel()


VOCAB, HIDDEN, BS = 30, 64, 64


def _task(name, description, make, data, loss, epochs, lr, wd=0.01):
    def build(rnn, device="cpu"):
        model = make(rnn).to(device)
        _move_state(model, device)
        return model

    def load(data_dir=None):  # generated, no files needed
        return data()

    return Task(name, description, build, load, loss, flat_accuracy, epochs, lr, wd)


HUMAN_NUMBERS_MODELS = {
    t.name: t for t in [
        _task("LMModel1", "3 hand-unrolled layers sharing weights", lambda rnn: LMModel1(VOCAB, HIDDEN),
              lambda: three_token_data(grouped=False), flat_loss, 4, 1e-3),
        _task("LMModel2", "the same as a loop", lambda rnn: LMModel2(VOCAB, HIDDEN),
              lambda: three_token_data(grouped=False), flat_loss, 4, 1e-3),
        _task("LMModel3", "stateful hidden state, detached each batch", lambda rnn: LMModel3(VOCAB, HIDDEN),
              lambda: three_token_data(grouped=True), flat_loss, 10, 3e-3),
        _task("LMModel4", "hand-written loop, a prediction at every step", lambda rnn: LMModel4(VOCAB, HIDDEN),
              sixteen_token_data, flat_loss, 15, 3e-3),
        _task("LMModel5", "RNN(64, 64, 2 layers), stateful", lambda rnn: LMModel5(VOCAB, HIDDEN, 2, BS, rnn),
              sixteen_token_data, flat_loss, 15, 3e-3),
        _task("LMModel6", "LSTM(64, 64, 2 layers), stateful", lambda rnn: LMModel6(VOCAB, HIDDEN, 2, BS, rnn),
              sixteen_token_data, flat_loss, 15, 1e-2),
        _task("LMModel7", "LSTM + dropout 0.4 + weight tying + AR/TAR + wd 0.1",
              lambda rnn: LMModel7(VOCAB, HIDDEN, 2, 0.4, BS, rnn), sixteen_token_data, ar_tar_loss, 15, 1e-2,
              wd=0.1),
    ]
}
