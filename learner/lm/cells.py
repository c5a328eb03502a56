"""The recurrent cells written out from their gate equations.

Training uses torch's fused layers (`nn.RNN`, `nn.LSTM`, `nn.GRU`: one C++ loop over
time); these cells are the same maths in plain tensor operations, to read and to
check against. They keep torch's parameter names and layouts (`weight_ih`,
`weight_hh`, `bias_ih`, `bias_hh`, gate blocks stacked in torch's order), so a torch
cell's `state_dict()` loads into them unchanged, and `ExplicitStack` runs a whole
multi-layer network from the fused layer's weights.

σ is the logistic sigmoid, ∘ the element-wise product, x the input, h the previous
hidden state; each gate g has input weights W_g, recurrent weights U_g and biases.
"""

from __future__ import annotations

import torch
from torch import nn

State = torch.Tensor | tuple[torch.Tensor, torch.Tensor]


class _Cell(nn.Module):
    gates = 1  # blocks of `hidden` rows stacked in the weight matrices

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        rows = self.gates * hidden_size
        bound = hidden_size ** -0.5  # torch's initialisation, U(-1/sqrt(H), 1/sqrt(H))
        self.weight_ih = nn.Parameter(torch.empty(rows, input_size).uniform_(-bound, bound))
        self.weight_hh = nn.Parameter(torch.empty(rows, hidden_size).uniform_(-bound, bound))
        self.bias_ih = nn.Parameter(torch.empty(rows).uniform_(-bound, bound))
        self.bias_hh = nn.Parameter(torch.empty(rows).uniform_(-bound, bound))

    def _from_input(self, x: torch.Tensor) -> list[torch.Tensor]:
        return (x @ self.weight_ih.T + self.bias_ih).chunk(self.gates, dim=-1)

    def _from_hidden(self, h: torch.Tensor) -> list[torch.Tensor]:
        return (h @ self.weight_hh.T + self.bias_hh).chunk(self.gates, dim=-1)


class RNNCell(_Cell):
    """Elman RNN: h_t = tanh(W x_t + U h_{t-1} + b)."""

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        (wx,), (uh,) = self._from_input(x), self._from_hidden(h)
        return torch.tanh(wx + uh)


class LSTMCell(_Cell):
    """Long short-term memory (torch's gate order: input, forget, candidate, output).

        f_t = σ(W_f x_t + U_f h_{t-1} + b_f)       forget: how much of C_{t-1} to keep
        i_t = σ(W_i x_t + U_i h_{t-1} + b_i)       input: how much of C̃_t to write
        C̃_t = tanh(W_C x_t + U_C h_{t-1} + b_C)    candidate cell contents
        o_t = σ(W_o x_t + U_o h_{t-1} + b_o)       output: how much of the cell to show
        C_t = f_t ∘ C_{t-1} + i_t ∘ C̃_t
        h_t = o_t ∘ tanh(C_t)

    The cell state C_t is updated additively, so its gradient flows back through time
    scaled by f_t rather than by a squashing non-linearity: long dependencies survive.
    """

    gates = 4

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]
                ) -> tuple[torch.Tensor, torch.Tensor]:
        h, c = state
        wx_i, wx_f, wx_c, wx_o = self._from_input(x)
        uh_i, uh_f, uh_c, uh_o = self._from_hidden(h)
        f = torch.sigmoid(wx_f + uh_f)
        i = torch.sigmoid(wx_i + uh_i)
        candidate = torch.tanh(wx_c + uh_c)
        o = torch.sigmoid(wx_o + uh_o)
        c = f * c + i * candidate
        return o * torch.tanh(c), c


class GRUCell(_Cell):
    """Gated recurrent unit (torch's gate order: reset, update, new).

        r_t = σ(W_r x_t + U_r h_{t-1} + b_r)              reset: how much past to read
        z_t = σ(W_z x_t + U_z h_{t-1} + b_z)              update: how much to keep
        n_t = tanh(W_n x_t + b_in + r_t ∘ (U_n h_{t-1} + b_hn))   candidate state
        h_t = (1 - z_t) ∘ n_t + z_t ∘ h_{t-1}

    One state vector and three gate blocks instead of the LSTM's two and four: about
    3/4 of the LSTM's parameters at the same width.
    """

    gates = 3

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        wx_r, wx_z, wx_n = self._from_input(x)
        uh_r, uh_z, uh_n = self._from_hidden(h)
        r = torch.sigmoid(wx_r + uh_r)
        z = torch.sigmoid(wx_z + uh_z)
        n = torch.tanh(wx_n + r * uh_n)
        return (1 - z) * n + z * h


CELLS = {"rnn": RNNCell, "lstm": LSTMCell, "gru": GRUCell}


class ExplicitStack(nn.Module):
    """A stack of explicit cells with the interface of `nn.LSTM(batch_first=True)`
    (or nn.GRU, nn.RNN): inputs (B, T, E), state (layers, B, H) or a pair of them,
    dropout between layers. A Python loop over time: slow, for checking and teaching."""

    def __init__(self, cell: str, input_size: int, hidden_size: int, num_layers: int,
                 dropout: float):
        super().__init__()
        self.is_lstm = cell == "lstm"
        self.cells = nn.ModuleList(
            CELLS[cell](input_size if layer == 0 else hidden_size, hidden_size)
            for layer in range(num_layers))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        hs, cs = state if self.is_lstm else (state, None)
        new_h, new_c = [], []
        for layer, cell in enumerate(self.cells):
            if layer > 0:
                x = self.dropout(x)
            h = (hs[layer], cs[layer]) if self.is_lstm else hs[layer]
            outputs = []
            for t in range(x.shape[1]):
                h = cell(x[:, t], h)
                outputs.append(h[0] if self.is_lstm else h)
            x = torch.stack(outputs, dim=1)
            new_h.append(h[0] if self.is_lstm else h)
            if self.is_lstm:
                new_c.append(h[1])
        hidden = torch.stack(new_h)
        return x, (hidden, torch.stack(new_c)) if self.is_lstm else hidden

    def load_fused(self, fused: nn.Module) -> None:
        """Copy the weights of a fused torch layer (`weight_ih_l0`, ...) into the cells."""
        weights = fused.state_dict()
        for layer, cell in enumerate(self.cells):
            cell.load_state_dict({name: weights[f"{name}_l{layer}"]
                                  for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")})
