from nodes.kernel_cache import check_package_kernels

check_package_kernels()  # before any of the package's numba kernels loads from the on-disk cache
