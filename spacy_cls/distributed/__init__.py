"""Data-parallel `spacy train`: spaCy's own training loop in N processes on
torch.distributed, launched by torchrun or Ray Train (docs/distributed.md).

- `sharding`: each global batch cut into one shard a rank, so that every rank runs the
  same number of steps;
- `gradients`: the gradients of every trainable weight, thinc's and the torch shims',
  all-reduced in buckets before the optimizer step, weighted by each rank's share of the
  global batch; weights broadcast from rank 0 at the start;
- `worker`: one rank's process (only rank 0 evaluates, logs and saves);
- `launch`: the launchers and `train_distributed`.
"""
