"""Pivotal tuning of the generator on one clip (PTI, Roich et al.), as in the paper's video workflow.

train.py: the training loop (pure: generator + samples + config -> tuned generator), checkpoints and resume.
losses.py: L2, LPIPS (when its weights are at hand) or MS-SSIM.
clip.py: the first pass of `sg3stream run --pti-steps N` (collecting the training frames) and the hook for pass 2.
save.py: writing the tuned generator in the project format.
"""
from .train import PTIConfig, PTISamples, PTITrainer, train_pti

__all__ = ["PTIConfig", "PTISamples", "PTITrainer", "train_pti"]
