"""What the CVAE does besides generating, each a serving signature (docs/applications.md):

- `inpaint`: missing pixels filled in, the known ones kept (`inpaint.py`);
- `denoise`: a noisy garment cleaned under a noise model (`denoise.py`);
- `classify`: p(y|x) by Bayes' rule on the model's own likelihood bounds, log p(x) and a
  typicality score that flags images that are not garments (`classify.py`).

`importance.py` holds what they share (codes drawn from the encoder and weighted by what is
known of the image); `corruptions.py` the masks, noise and out-of-distribution images they are
measured on. The exported module that serves them is `cvae.serving.module`; their calls through
an export, `cvae.serving.applications`; the report's sections, `cvae.evaluation.applications`.
"""
