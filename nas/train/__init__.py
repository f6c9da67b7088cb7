"""Training engine shared by `nas train` (standalone) and the supernet trainer.

    from nas.train import Recipe, Trainer
    Trainer(model, load_dataset(root), Recipe(epochs=10, resolution=64), "runs/x").fit()

Subclass Trainer and override `training_step` for another per-batch rule (see loop.py).
"""
from nas.train.distributed import DistEnv
from nas.train.loop import Trainer
from nas.train.recipe import Recipe, make_recipe
from nas.train.teacher import FrozenTeacher, load_teacher
from nas.train.weights import load_weights_strict

__all__ = ["DistEnv", "FrozenTeacher", "Recipe", "Trainer", "load_teacher", "load_weights_strict", "make_recipe"]
