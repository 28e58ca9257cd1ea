"""Training a LightGBM model on a dataset's contract-typed frame, one module per job.

``split`` (data checks, seeded splits, the matrix LightGBM sees) · ``space`` (the one search
space) · ``fit`` (one booster) · ``tune`` (the Optuna study) · ``storage`` (Optuna storage
URLs) · ``model`` (tune + refit + baseline, scoring the held-out splits) · ``run`` (what the
train flow needs around the model: data file, study name, lineage, its answer).
"""
