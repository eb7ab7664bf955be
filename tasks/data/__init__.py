"""The data plumbing every task shares: ``BaseDataModule`` (splits, synthetic data, bad records, loaders), image
reading and folder walking, augmentation, WebDataset shards, exact-resume sampling, and rebuilding tasks and data
modules from checkpoints."""
