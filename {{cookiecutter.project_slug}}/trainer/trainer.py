"""Your Trainer, named by config.json's ``trainer.type`` ("Trainer" by default). Yours to change and add to, like
model/ and data_loader/: the engine, base/base_trainer.py, runs the epochs, checkpoints, exact resume, AMP,
compile, DDP and stop signals around whatever one batch does here.

One method is the place for unusual training: ``batch_loss(model, batch)``, which returns
``BatchLoss(loss, output, target)``. The engine backpropagates the loss, and calls each configured metric as
``metric(output, target)``; validation and test.py use it too. For example, a model that returns a dict, trained
on two of its losses:

    class TwoLossTrainer(BaseTrainer):
        def batch_loss(self, model, batch):
            inputs, target = batch
            out = model(inputs)
            loss = self.criterion(out["logits"], target) + 0.1 * out["aux_loss"]
            return BatchLoss(loss, out["logits"], target)

then ``"trainer": {"type": "TwoLossTrainer", ...}``. A batch is what the data loader gives, of any structure; the
engine has moved its tensors to the device. ``self`` holds ``criterion``, ``metrics``, ``settings`` and ``device``
(test.py's evaluation has only these); training also has ``model``, ``optimizer`` and the loaders.
"""

from base.base_trainer import BaseTrainer, BatchLoss

__all__ = ["BatchLoss", "Trainer"]


class Trainer(BaseTrainer):
    """The engine's own step: ``inputs, target = batch``; the loss is config.json's ``loss(model(inputs), target)``."""
