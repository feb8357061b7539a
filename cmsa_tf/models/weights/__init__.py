"""Pretrained backbone weights: the keras.applications ImageNet copy and the TF1 DeepLab reader."""
