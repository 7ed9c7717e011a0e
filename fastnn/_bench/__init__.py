"""The benchmark workloads of SPEC section 5 and the runners that time them.

One implementation of each workload and of each peer's training loop lives here, used by
both ``fastnn bench`` (``fastnn.cli``) and the pytest-benchmark suite in ``bench/``:

- :mod:`.workloads` -- W1-W6: data, network, batch size, learning rate, epochs, FLOPs;
- :mod:`.runners` -- one runner per implementation (fastnn's three backends, scikit-learn,
  PyTorch, a plain ``@njit`` loop), each with an untimed warm-up and a timed ``train``;
- :mod:`.njit_loop` -- the plain ``@njit`` online loop, a peer on W2;
- :mod:`.checks` -- the same-work check (does a run follow the reference trajectory?);
- :mod:`.machine` -- CPU, BLAS, versions, GEMM peak, import time;
- :mod:`.suite` -- runs a selection and derives samples/s, GFLOP/s, ratios;
- :mod:`.targets` -- the speed targets of issue 3 / SPEC section 5, met or missed;
- :mod:`.report` -- the table, the JSON file and the bar chart.

Private: nothing here is part of fastnn's public API. scikit-learn, PyTorch and
matplotlib are imported only by the runners and the plot that need them.
"""
