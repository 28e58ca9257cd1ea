"""Evidence about a model's performance beyond input drift, each a small fit/calculate unit.

- ``stats``: the shared result types (an estimate with its interval; binary and regression
  metric sets) and the interval formulas (Wilson, DeLong, normal);
- ``calibration``: a logistic spline of the score's logit, kept only if the scores need it;
- ``cbpe``: confidence-based performance estimation for binary models (no labels needed);
- ``dle``: direct loss estimation for regression models (no labels needed);
- ``realized``: late labels joined to the predictions they belong to, scored per
  prediction-time window, with coverage, lag and label-rate (prior) drift;
- ``domain``: multivariate drift by a domain classifier;
- ``layout``: the columns DLE's and the domain classifier's small trees read;
- ``trust``: estimate against realized once labels mature (evidence of concept drift).
"""
