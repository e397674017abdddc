"""The text models' loaders (AG News CSV, IMDB folders, any text for the character model), tested on
small files in the published formats that the tests write, and their models against torch.nn."""
import csv
import random

import pytest
import torch

from fusedrnn import train
from fusedrnn.models import MODELS
from fusedrnn.models.classifiers import char_data, predict_sentiment, sample
from fusedrnn.models.text import Vocab, bucket_batches, pad, read_ag_news, read_imdb, tokenize
from helpers import assert_rel

WORDS = ["alpha", "beta", "gamma", "delta", "market", "game", "science", "world", "film", "plot", "actor", "scene"]


def write_ag_news(folder, n_train=320, n_test=64, seed=0):
    rng = random.Random(seed)
    for split, n in (("train", n_train), ("test", n_test)):
        with open(folder / f"{split}.csv", "w", newline="") as f:
            w = csv.writer(f)
            for i in range(n):
                label = i % 4 + 1
                words = [f"topic{label}"] * 3 + rng.choices(WORDS, k=rng.randint(3, 25))
                rng.shuffle(words)
                w.writerow([label, f"Title {label}", " ".join(words) + "."])


def write_imdb(folder, n=48, seed=0):
    rng = random.Random(seed)
    for split in ("train", "test"):
        for label in ("pos", "neg"):
            d = folder / "aclImdb" / split / label
            d.mkdir(parents=True)
            for i in range(n):
                key = "wonderful" if label == "pos" else "terrible"
                words = [key] * 12 + rng.choices(WORDS, k=rng.randint(5, 60))
                rng.shuffle(words)
                (d / f"{i}_7.txt").write_text(" ".join(words) + " <br /><br /> The end!")


def test_tokenizer_vocab_padding_buckets():
    assert tokenize("Hello, World! It's <br />great.") == ["hello", ",", "world", "!", "it", "'", "s", "great", "."]
    v = Vocab([["a", "b", "b"], ["b", "c"]], min_freq=2, specials=("<unk>", "<PAD>"))
    assert v.itos == ["<unk>", "<PAD>", "b"] and v(["b", "zzz"]) == [2, 0]
    x, lengths = pad([[5, 6, 7], [8]], pad_index=1)
    assert x.tolist() == [[5, 6, 7], [8, 1, 1]] and lengths.tolist() == [3, 1]
    batches = bucket_batches([5, 1, 9, 3, 7, 2], bs=2, pool=3, shuffle=False)
    assert sorted(i for b in batches for i in b) == list(range(6))
    assert all(len(b) == 2 for b in batches)


def test_loaders_read_the_published_formats(tmp_path):
    write_ag_news(tmp_path)
    rows = read_ag_news(str(tmp_path), "train")
    assert len(rows) == 320 and {label for label, _ in rows} == {0, 1, 2, 3}
    write_imdb(tmp_path / "imdb")
    items = read_imdb(str(tmp_path / "imdb"), "test")
    assert len(items) == 96 and {label for label, _ in items} == {0, 1}
    with pytest.raises(FileNotFoundError, match="AG News not found at .* put train.csv and test.csv"):
        read_ag_news(str(tmp_path / "nowhere"), "train")
    with pytest.raises(FileNotFoundError, match="IMDB needs a data folder"):
        read_imdb(None, "train")


def run_short(name, data_dir, epochs, rnn="fusedrnn"):
    return train.fit_one_cycle(MODELS[name], rnn, epochs=epochs, seed=0, data_dir=data_dir, log=lambda *_: None,
                               progress=False)


@pytest.mark.parametrize("name", ["agnews_rnn", "agnews_lstm", "agnews_lstm_packed"])
def test_agnews_models_learn(tmp_path, name):
    write_ag_news(tmp_path)
    result = run_short(name, str(tmp_path), epochs=6)
    first, last = result["history"][0], result["history"][-1]
    assert last["train_loss"] < first["train_loss"] and last["valid_loss"] < first["valid_loss"]


@pytest.mark.parametrize("name", ["imdb_vanilla_rnn", "imdb_gru", "imdb_fastai_birnn", "imdb_fastai_lstm"])
def test_imdb_models_learn(tmp_path, name):
    write_imdb(tmp_path)
    result = run_short(name, str(tmp_path), epochs=5)
    first, last = result["history"][0], result["history"][-1]
    assert last["train_loss"] < first["train_loss"]
    if name == "imdb_gru":
        vocab = MODELS[name].extra["cache"]["vocab"]
        p_pos = predict_sentiment(result["model"], vocab, "wonderful wonderful film, wonderful actor")
        p_neg = predict_sentiment(result["model"], vocab, "terrible terrible film, terrible actor")
        assert 0.0 <= p_neg < p_pos <= 1.0


@pytest.mark.parametrize("name", ["agnews_rnn", "agnews_lstm_packed", "imdb_vanilla_rnn", "imdb_gru",
                                  "imdb_fastai_rnn", "imdb_fastai_birnn", "imdb_fastai_lstm", "imdb_fastai_gru",
                                  "char_lstm"])
def test_text_model_steps_match_torch(tmp_path, name):
    """A few optimizer steps with fusedrnn give torch.nn's losses on the same weights and batches."""
    if name.startswith("agnews"):
        write_ag_news(tmp_path)
    elif name.startswith("imdb"):
        write_imdb(tmp_path)
    else:
        (tmp_path / "a.txt").write_text("def f(x):\n    return x + 1\n" * 200)
    task = MODELS[name]
    train_batches, _ = task.data(str(tmp_path))
    losses = {}
    for rnn in ("torch", "fusedrnn"):
        torch.manual_seed(0)
        model = task.build(rnn).double()
        model.train()
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        losses[rnn] = []
        for step, (inputs, target) in enumerate(train_batches[:3]):
            torch.manual_seed(100 + step)  # the same dropout masks
            loss = task.loss(model(*inputs), target)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses[rnn].append(loss.detach())
    for a, b in zip(losses["fusedrnn"], losses["torch"]):
        assert_rel(a, b, 1e-9)


def test_char_model_learns_on_the_default_corpus_and_samples():
    task = MODELS["char_lstm"]
    train_batches, valid_batches = task.data()
    chars = task.extra["cache"]["chars"]
    assert len(chars) > 60 and len(train_batches) > 100  # Python's stdlib sources
    torch.manual_seed(0)
    model = task.build("fusedrnn")
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for inputs, target in train_batches[:40]:
        loss = task.loss(model(*inputs), target)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.5
    text = sample(model, chars, prime="def ", length=50)
    assert text.startswith("def ") and len(text) == 54 and set(text) <= set(chars)


def test_char_data_layout():
    chars, train_b, valid_b = char_data("abcdefghij" * 50, seq_len=10, bs=4)
    (x,), y = train_b[0]
    assert x.shape == (4, 10) and torch.equal(x[:, 1:], y[:, :-1])
    assert chars == sorted(set("abcdefghij"))
