"""The built-in adder: problems are right, and "correct" means what greedy decoding gives."""

from __future__ import annotations

import numpy as np
import torch


def test_problems_hold_the_true_sums():
    from geowidgets._arithmetic import VOCAB, addition_problems
    from geowidgets.datasets import addition_demo  # noqa: F401  (public entry point exists)

    ids, a, b = addition_problems(50, n_digits=3, seed=3)
    for row, x, y in zip(ids.tolist(), a.tolist(), b.tolist()):
        text = "".join(VOCAB[t] for t in row)
        lhs, answer = text.split("=")
        assert lhs == f"{x:03d}+{y:03d}"
        assert int(answer[::-1]) == x + y


def _greedy(model, ids, n_digits):
    prompt = ids[:, : 2 * n_digits + 2].clone()
    with torch.inference_mode():
        for _ in range(n_digits + 1):
            nxt = model(prompt)[:, -1].argmax(-1, keepdim=True)
            prompt = torch.cat([prompt, nxt], dim=1)
    return prompt


def test_correct_flag_equals_greedy_decoding():
    from geowidgets.datasets import addition_demo

    demo = addition_demo(n=300, n_digits=2, epochs=6, seed=1)
    decoded = _greedy(demo.model, demo.input_ids, 2)
    solved = (decoded == demo.input_ids).all(1).numpy()
    np.testing.assert_array_equal(demo.correct, solved)
    assert demo.inputs["input_ids"] is demo.input_ids
    out = demo.model(**demo.inputs)
    assert out.shape == (300, demo.input_ids.shape[1], 13)
    wrong = ~demo.correct
    assert (demo.first_wrong_step[wrong] >= 0).all() and (demo.first_wrong_step[~wrong] == -1).all()
