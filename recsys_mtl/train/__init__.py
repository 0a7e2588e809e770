"""Training with Lightning: losses, metrics, the LightningModule, data module, run folders."""
