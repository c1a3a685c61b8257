"""Session.default_anchors with fewer than three classes spreads the rest over the other samples."""

import numpy as np
import torch

from geowidgets.session import Session


def _expected(session: Session) -> tuple[int, int, int]:
    """The anchors by the plain rule, with Python lists."""
    correct = session.correct
    pool = np.flatnonzero(correct) if correct is not None and int(correct.sum()) >= 3 else np.arange(session.n)
    labels = session.labels[pool]
    counts = np.bincount(labels)
    order = [int(c) for c in np.argsort(-counts, kind="stable") if counts[c] > 0]
    picks = [int(pool[np.flatnonzero(labels == c)[0]]) for c in order[:3]]
    rest = [int(i) for i in pool if int(i) not in picks]
    while len(picks) < 3:
        picks.append(rest[(len(picks) * len(rest)) // 3])
    return picks[0], picks[1], picks[2]


def test_default_anchors_with_one_and_two_classes():
    torch.manual_seed(0)
    x = torch.randn(40, 3)
    for labels in (torch.zeros(40, dtype=torch.int64), (torch.arange(40) % 2)):
        session = Session(torch.nn.Sequential(torch.nn.Linear(3, 2)), x, labels, layers=["0"], k_max=5)
        anchors = session.default_anchors()
        assert anchors == _expected(session)
        assert len(set(anchors)) == 3
