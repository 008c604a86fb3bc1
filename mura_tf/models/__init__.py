"""The networks: backbones (`backbones`), classification heads (`heads`), the SimCLR model
(`simclr`) and its NT-Xent loss (`losses`)."""
