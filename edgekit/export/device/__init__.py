"""Standalone scripts copied into device bundles. They import neither TensorFlow nor edgekit."""
