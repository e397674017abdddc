"""The documented models (shared/MODELS.md), written as the seed notebooks write them.

`make_models(nn)` defines every model against a namespace `nn`: torch.nn itself, or torch.nn with
fusedrnn's recurrent classes swapped in (`SWAPPED`). Nothing else differs between the two.
"""
import types

import torch
import torch.nn.functional as F

import fusedrnn

SWAPPED = types.SimpleNamespace(**{**vars(torch.nn), **{n: getattr(fusedrnn, n) for n in (
    "RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell")}})


def make_models(nn):
    # -- seed 000: human numbers language models (fastai book, chapter 12) ------------------
    class LMModel5(nn.Module):
        def __init__(self, vocab_sz, n_hidden, n_layers, bs):
            super().__init__()
            self.i_h = nn.Embedding(vocab_sz, n_hidden)
            self.rnn = nn.RNN(n_hidden, n_hidden, n_layers, batch_first=True)
            self.h_o = nn.Linear(n_hidden, vocab_sz)
            self.h = torch.zeros(n_layers, bs, n_hidden)

        def forward(self, x):
            res, h = self.rnn(self.i_h(x), self.h)
            self.h = h.detach()
            return self.h_o(res)

        def reset(self):
            self.h.zero_()

    class LMModel6(nn.Module):
        def __init__(self, vocab_sz, n_hidden, n_layers, bs):
            super().__init__()
            self.i_h = nn.Embedding(vocab_sz, n_hidden)
            self.rnn = nn.LSTM(n_hidden, n_hidden, n_layers, batch_first=True)
            self.h_o = nn.Linear(n_hidden, vocab_sz)
            self.h = [torch.zeros(n_layers, bs, n_hidden) for _ in range(2)]

        def forward(self, x):
            res, h = self.rnn(self.i_h(x), self.h)
            self.h = [h_.detach() for h_ in h]
            return self.h_o(res)

        def reset(self):
            for h in self.h:
                h.zero_()

    class LMModel7(nn.Module):
        def __init__(self, vocab_sz, n_hidden, n_layers, p, bs):
            super().__init__()
            self.i_h = nn.Embedding(vocab_sz, n_hidden)
            self.rnn = nn.LSTM(n_hidden, n_hidden, n_layers, batch_first=True)
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
            for h in self.h:
                h.zero_()

    # -- seed 001: AG News classifiers (AI for beginners) ------------------------------------
    class RNNClassifier(torch.nn.Module):
        def __init__(self, vocab_size, embed_dim, hidden_dim, num_class):
            super().__init__()
            self.hidden_dim = hidden_dim
            self.embedding = torch.nn.Embedding(vocab_size, embed_dim)
            self.rnn = nn.RNN(embed_dim, hidden_dim, batch_first=True)
            self.fc = torch.nn.Linear(hidden_dim, num_class)

        def forward(self, x):
            x = self.embedding(x)
            x, h = self.rnn(x)
            return self.fc(x.mean(dim=1))

    class LSTMClassifier(torch.nn.Module):
        def __init__(self, vocab_size, embed_dim, hidden_dim, num_class):
            super().__init__()
            self.hidden_dim = hidden_dim
            self.embedding = torch.nn.Embedding(vocab_size, embed_dim)
            self.embedding.weight.data = torch.randn_like(self.embedding.weight.data) - 0.5
            self.rnn = nn.LSTM(embed_dim, hidden_dim, batch_first=True)
            self.fc = torch.nn.Linear(hidden_dim, num_class)

        def forward(self, x):
            x = self.embedding(x)
            x, (h, c) = self.rnn(x)
            return self.fc(h[-1])

    class LSTMPackClassifier(torch.nn.Module):
        def __init__(self, vocab_size, embed_dim, hidden_dim, num_class):
            super().__init__()
            self.hidden_dim = hidden_dim
            self.embedding = torch.nn.Embedding(vocab_size, embed_dim)
            self.embedding.weight.data = torch.randn_like(self.embedding.weight.data) - 0.5
            self.rnn = nn.LSTM(embed_dim, hidden_dim, batch_first=True)
            self.fc = torch.nn.Linear(hidden_dim, num_class)

        def forward(self, x, lengths):
            x = self.embedding(x)
            pad_x = torch.nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
            pad_x, (h, c) = self.rnn(pad_x)
            x, _ = torch.nn.utils.rnn.pad_packed_sequence(pad_x, batch_first=True)
            return self.fc(h[-1])

    # -- seed 002: IMDB sentiment ------------------------------------------------------------
    class Vanilla_RNN(nn.Module):
        def __init__(self, input_dim, embedding_dim, hidden_dim, output_dim):
            super().__init__()
            self.embedding = nn.Embedding(input_dim, embedding_dim)
            self.rnn = nn.RNN(embedding_dim, hidden_dim)
            self.fc = nn.Linear(hidden_dim, output_dim)

        def forward(self, text):
            embedded = self.embedding(text)
            output, hidden = self.rnn(embedded)
            return self.fc(hidden.squeeze(0))

    class IMDB_RNN(nn.Module):
        def __init__(self, input_dim, embedding_dim, pad_index, hidden_dim, output_dim, num_layers,
                     bidirectional, dropout):
            super().__init__()
            self.embedding = nn.Embedding(input_dim, embedding_dim, padding_idx=pad_index)
            self.rnn = nn.GRU(embedding_dim, hidden_dim, num_layers=num_layers, bidirectional=bidirectional,
                              dropout=dropout)
            self.fc = nn.Linear(hidden_dim * 2, output_dim)
            self.dropout = nn.Dropout(dropout)

        def forward(self, text, text_lengths):
            embedded = self.dropout(self.embedding(text))
            packed = nn.utils.rnn.pack_padded_sequence(embedded, text_lengths.to("cpu"), enforce_sorted=False)
            packed_output, hidden = self.rnn(packed)
            hidden = self.dropout(torch.cat((hidden[-2, :, :], hidden[-1, :, :]), dim=1))
            return self.fc(hidden)

    # -- seed 003: fastai TextClassifier variants --------------------------------------------
    class TextClassifierRNN(nn.Module):
        def __init__(self, vocab_size, hidden_size):
            super().__init__()
            self.emb = nn.Embedding(vocab_size, hidden_size)
            self.rnn = nn.RNN(hidden_size, hidden_size, batch_first=True)
            self.fc1 = nn.Linear(hidden_size, 10)
            self.fc2 = nn.Linear(10, 2)

        def forward(self, x):
            x = self.emb(x)
            _, x = self.rnn(x)
            return self.fc2(self.fc1(x))

    class TextClassifierBiRNN(nn.Module):
        def __init__(self, vocab_size, hidden_size):
            super().__init__()
            self.emb = nn.Embedding(vocab_size, hidden_size)
            self.rnn = nn.RNN(hidden_size, hidden_size, bidirectional=True, batch_first=True)
            self.fc1 = nn.Linear(hidden_size * 2, 10)
            self.fc2 = nn.Linear(10, 2)

        def forward(self, x):
            x = self.emb(x)
            _, x = self.rnn(x)
            x = torch.cat((x[0], x[1]), dim=-1)
            return self.fc2(self.fc1(x))

    class TextClassifierLSTM(nn.Module):
        def __init__(self, vocab_size, hidden_size):
            super().__init__()
            self.emb = nn.Embedding(vocab_size, hidden_size)
            self.rnn = nn.LSTM(hidden_size, hidden_size, batch_first=True)
            self.fc1 = nn.Linear(hidden_size, 10)
            self.fc2 = nn.Linear(10, 2)

        def forward(self, x):
            x = self.emb(x)
            x, _ = self.rnn(x)[1]
            return self.fc2(self.fc1(x))

    class TextClassifierGRU(nn.Module):
        def __init__(self, vocab_size, hidden_size):
            super().__init__()
            self.emb = nn.Embedding(vocab_size, hidden_size)
            self.rnn = nn.GRU(hidden_size, hidden_size, batch_first=True)
            self.fc1 = nn.Linear(hidden_size, 10)
            self.fc2 = nn.Linear(10, 2)

        def forward(self, x):
            x = self.emb(x)
            _, x = self.rnn(x)
            return self.fc2(self.fc1(x))

    # -- seed 004: character-level LSTM --------------------------------------------------------
    class CharLSTM(nn.Module):
        def __init__(self, n_chars, n_hidden=128, n_layers=4):
            super().__init__()
            self.n_chars = n_chars
            self.lstm = nn.LSTM(n_chars, n_hidden, n_layers, batch_first=True)
            self.fc = nn.Linear(n_hidden, n_chars)

        def forward(self, x, hidden=None):
            out, hidden = self.lstm(F.one_hot(x, self.n_chars).to(self.fc.weight.dtype), hidden)
            return self.fc(out), hidden

    return types.SimpleNamespace(**{k: v for k, v in locals().items() if isinstance(v, type)})
