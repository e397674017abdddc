"""The model zoo and the train command (human numbers, seed 000)."""
import pytest
import torch

from fusedrnn import train
from fusedrnn.models import MODELS
from fusedrnn.models.human_numbers import (group_chunks, human_numbers_lines, human_numbers_tokens, number_words,
                                           sixteen_token_data, three_token_data)
from helpers import assert_rel


def test_human_numbers_data_matches_fastai_files():
    train_lines, valid_lines = human_numbers_lines()
    assert len(train_lines) == 7999 and len(valid_lines) == 1999 and len(train_lines) + len(valid_lines) == 9998
    assert train_lines[0] == "one" and train_lines[-1] == "seven thousand nine hundred ninety nine"
    assert valid_lines[0] == "eight thousand one" and "eight thousand" not in train_lines + valid_lines
    assert number_words(229) == "two hundred twenty nine" and number_words(1010) == "one thousand ten"
    tokens, vocab, nums = human_numbers_tokens()
    assert len(tokens) == 63095 and len(vocab) == 30
    assert vocab[:4] == ["one", ".", "two", "three"] and nums[:4] == [0, 1, 2, 1]
    with pytest.raises(ValueError):
        number_words(10000)


def test_sequences_and_group_chunks():
    train_b, valid_b = three_token_data(grouped=False)
    assert sum(len(y) for _, y in train_b + valid_b) == 21031
    (x, ), y = train_b[0]
    assert x.shape == (64, 3) and y.shape == (64,)
    assert group_chunks(list(range(10)), 2) == [0, 5, 1, 6, 2, 7, 3, 8, 4, 9]
    train16, valid16 = sixteen_token_data()
    (x, ), y = train16[0]
    assert x.shape == (64, 16) and torch.equal(x[:, 1:], y[:, :-1])
    # group_chunks: row j of batch i+1 continues row j of batch i.
    (x_next, ), _ = train16[1]
    assert torch.equal(x_next[:, 0], y[:, -1])


@pytest.mark.parametrize("name", ["LMModel5", "LMModel6", "LMModel7"])
def test_zoo_model_step_matches_torch(name):
    task = MODELS[name]
    (inputs, target) = task.data()[0][0]
    losses = []
    for rnn in ("torch", "fusedrnn"):
        torch.manual_seed(0)
        model = task.build(rnn)
        model.train()
        torch.manual_seed(1)
        loss = task.loss(model(*inputs), target)
        loss.backward()
        losses.append((loss.detach(), [p.grad.clone() for p in model.parameters()]))
    assert_rel(losses[1][0], losses[0][0], 1e-5)
    for a, b in zip(losses[1][1], losses[0][1]):
        assert_rel(a, b, 1e-4)


def test_train_checkpoint_and_resume_reproduce_a_straight_run(tmp_path):
    task = MODELS["LMModel5"]
    quiet = dict(log=lambda *_: None, progress=False)
    straight = train.fit_one_cycle(task, "fusedrnn", epochs=2, seed=3, **quiet)
    path = str(tmp_path / "ck.pt")
    first = train.fit_one_cycle(task, "fusedrnn", epochs=2, seed=3, checkpoint=path, stop_after=1, **quiet)
    assert len(first["history"]) == 1 and torch.load(path, weights_only=False)["epoch"] == 1
    resumed = train.fit_one_cycle(task, "fusedrnn", epochs=2, seed=3, resume=path, **quiet)
    assert len(resumed["history"]) == 2
    for a, b in zip(resumed["history"], straight["history"]):
        assert a["train_loss"] == b["train_loss"] and a["accuracy"] == b["accuracy"]
    with pytest.raises(ValueError, match="is for LMModel5 with fusedrnn"):
        train.fit_one_cycle(task, "torch", epochs=2, seed=3, resume=path, **quiet)


def test_train_command_compare(capsys, tmp_path):
    runs = train.main(["LMModel5", "--compare", "--epochs", "1", "--json", str(tmp_path / "r.json")])
    assert [r["rnn"] for r in runs] == ["torch", "fusedrnn"]
    out = capsys.readouterr().out
    assert "epoch  train_loss valid_loss  accuracy    time" in out and "speed: torch.nn training time" in out
    assert (tmp_path / "r.json").exists()
    with pytest.raises(SystemExit):
        train.main(["LMModel99"])
