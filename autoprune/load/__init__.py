"""Loading: models by name (builtin, torchvision, timm, user code), data sets, the demo model, input shapes."""
