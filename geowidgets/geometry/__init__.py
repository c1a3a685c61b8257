"""Pure geometry probes over one layer's activations (torch tensors or numpy arrays).

Every function accepts a ``torch.Tensor`` or a ``numpy.ndarray``, runs on the tensor's device
(numpy: the best available device) and returns the same kind. Nothing here imports Jupyter.
See PROBES.md for each probe's formula, defaults and validation.
"""

from geowidgets.geometry._knn import KNNGraph, faiss_available, knn, knn_graph

__all__ = [
    "KNNGraph",
    "faiss_available",
    "knn",
    "knn_graph",
]
