// The namespace of the scalar reference twins. Every fast kernel in this package has a twin here
// (or in an extension in the module that owns the kernel), written for clarity; tests check the
// fast paths against them.

/// Scalar reference implementations of the kernels: slow, obvious, and the tests' oracle.
public enum Reference {}
