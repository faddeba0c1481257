"""Model blocks, the skeleton encoder, heads, the MAMP pretraining model and checkpoint I/O."""
