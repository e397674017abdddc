"""The seeds' models run with fusedrnn's classes swapped in and nothing else changed: the same
initial weights, forward and backward as torch.nn, and the same parameters after a few Adam steps."""
import pytest
import torch
import torch.nn.functional as F

from helpers import assert_rel
from seed_models import SWAPPED, make_models

TORCH_MODELS = make_models(torch.nn)
FUSED_MODELS = make_models(SWAPPED)
V = 30  # vocabulary


def lm_batches(bs, seq_len, steps, vocab=V):
    x = torch.randint(0, vocab, (steps, bs, seq_len + 1))
    return [((b[:, :-1],), b[:, 1:]) for b in x]


def lm_loss(out, y):
    return F.cross_entropy(out.reshape(-1, out.size(-1)), y.reshape(-1))


def lm7_loss(out, y):
    pred, raw, dropped = out  # fastai's RNNRegularizer: AR (alpha=2) on the dropped output, TAR (beta=1) on raw
    return lm_loss(pred, y) + 2 * dropped.float().pow(2).mean() + 1 * (raw[:, 1:] - raw[:, :-1]).float().pow(2).mean()


def padded_batches(bs, max_len, steps, batch_first=True, with_lengths=False):
    batches = []
    for _ in range(steps):
        lengths = torch.randint(1, max_len + 1, (bs,))
        lengths[0] = max_len
        x = torch.randint(2, V, (bs, max_len))
        for i, n in enumerate(lengths.tolist()):
            x[i, n:] = 1  # padding index, as in the seeds
        if not batch_first:
            x = x.t()
        y = torch.randint(0, 4, (bs,))
        batches.append(((x, lengths) if with_lengths else (x,), y))
    return batches


def ce(out, y):
    return F.cross_entropy(out, y)


def bce(out, y):
    return F.binary_cross_entropy_with_logits(out.squeeze(-1), (y % 2).to(out.dtype))


def fastai_loss(out, y):
    return F.cross_entropy(out.reshape(-1, 2), (y % 2).repeat(out.numel() // 2 // y.numel()))


def char_batches(bs, seq_len, steps, n_chars=40):
    x = torch.randint(0, n_chars, (steps, bs, seq_len + 1))
    return [((b[:, :-1],), b[:, 1:]) for b in x]


def char_loss(out, y):
    return lm_loss(out[0], y)


# name -> (class name, constructor args, batches, loss, training mode)
CASES = {
    "LMModel5": ("LMModel5", (V, 64, 2, 16), lambda: lm_batches(16, 16, 3), lm_loss),
    "LMModel6": ("LMModel6", (V, 64, 2, 16), lambda: lm_batches(16, 16, 3), lm_loss),
    "LMModel7": ("LMModel7", (V, 64, 2, 0.4, 16), lambda: lm_batches(16, 16, 3), lm7_loss),
    "RNNClassifier": ("RNNClassifier", (V, 64, 32, 4), lambda: padded_batches(16, 20, 3), ce),
    "LSTMClassifier": ("LSTMClassifier", (V, 64, 32, 4), lambda: padded_batches(16, 20, 3), ce),
    "LSTMPackClassifier": ("LSTMPackClassifier", (V, 64, 32, 4),
                           lambda: padded_batches(16, 20, 3, with_lengths=True), ce),
    "Vanilla_RNN": ("Vanilla_RNN", (V, 100, 64, 1), lambda: padded_batches(8, 25, 3, batch_first=False), bce),
    "IMDB_GRU": ("IMDB_RNN", (V, 100, 1, 64, 1, 2, True, 0.5),
                 lambda: padded_batches(8, 25, 3, batch_first=False, with_lengths=True), bce),
    "TextClassifierRNN": ("TextClassifierRNN", (V, 100), lambda: padded_batches(8, 15, 3), fastai_loss),
    "TextClassifierBiRNN": ("TextClassifierBiRNN", (V, 100), lambda: padded_batches(8, 15, 3), fastai_loss),
    "TextClassifierLSTM": ("TextClassifierLSTM", (V, 100), lambda: padded_batches(8, 15, 3), fastai_loss),
    "TextClassifierGRU": ("TextClassifierGRU", (V, 100), lambda: padded_batches(8, 15, 3), fastai_loss),
    "CharLSTM": ("CharLSTM", (40,), lambda: char_batches(4, 12, 3), char_loss),
}


@pytest.fixture
def float64_default():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


@pytest.mark.parametrize("name", list(CASES))
def test_seed_model_trains_like_torch(name, float64_default):
    cls_name, args, make_batches, loss_fn = CASES[name]
    seed = torch.randint(0, 2**31, ()).item()
    models = []
    for ns in (TORCH_MODELS, FUSED_MODELS):
        torch.manual_seed(seed)
        models.append(getattr(ns, cls_name)(*args))
    ref, ours = models
    swapped = [m for m in ours.modules() if type(m).__module__.startswith("fusedrnn")]
    assert swapped, "no fusedrnn module in the swapped model"
    # Same seed, same construction order: bit-identical initial weights.
    assert list(ref.state_dict()) == list(ours.state_dict())
    for a, b in zip(ref.state_dict().values(), ours.state_dict().values()):
        assert torch.equal(a, b)

    batches = make_batches()
    optimizers = [torch.optim.Adam(m.parameters(), lr=1e-3) for m in models]
    for step, (inputs, target) in enumerate(batches):
        losses, grads = [], []
        for m, opt in zip(models, optimizers):
            torch.manual_seed(seed + step)  # the same dropout masks on both sides
            opt.zero_grad()
            loss = loss_fn(m(*inputs), target)
            loss.backward()
            losses.append(loss.detach())
            grads.append([p.grad.clone() for p in m.parameters()])
            torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
            opt.step()
        assert_rel(losses[1], losses[0], 1e-10, f"loss at step {step}")
        for k, (a, b) in enumerate(zip(grads[1], grads[0])):
            assert_rel(a, b, 1e-9, f"gradient {k} at step {step}")
    for (n, a), (_, b) in zip(ours.named_parameters(), ref.named_parameters()):
        assert_rel(a, b, 1e-9, f"parameter {n} after {len(batches)} Adam steps")
