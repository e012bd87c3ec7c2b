"""In-process probe. Depends only on the standard library, numpy and Keras so that it
can be injected by path into any interpreter that has TensorFlow."""
