"""The pages, one module per screen: monitor, launch, history, compare, datasets, notifications."""
