"""Training: fine-tuning (warm-up + cosine), knowledge distillation, BatchNorm re-estimation, metrics and losses."""
