"""dsmoe's PyTorch training engine: the recipe's DS-MoE model trained with torch.distributed (DDP), launched by
`dsmoe train <recipe> --engine torch` through torchrun. Reads the prepared data and the run spec written by the
TypeScript side; writes dsmoe's dense checkpoint folder (docs/design.md §2, docs/training.md "Scaling out")."""
