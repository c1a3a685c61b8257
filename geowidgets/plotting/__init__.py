"""Bokeh figures for geowidgets (per-layer metric charts). Imports bokeh only when called.

Examples
--------
>>> from geowidgets.plotting import profile_figure
>>> fig = profile_figure({"rankme": [3.0, 2.0]}, ["fc1", "fc2"])
>>> sorted(fig.sources)
['rankme']
"""

from geowidgets.plotting._profile import METRIC_TITLES, ProfileFigure, profile_figure, profile_values

__all__ = ["METRIC_TITLES", "ProfileFigure", "profile_figure", "profile_values"]
