# The R SDK (sdks/r): included by the top Makefile.
#
#   make r-setup     R and the packages the SDK needs, from Debian (as root)
#   make r-install   the package into .rlib/ at the repository's root
#   make r-test      its testthat tests
#   make r-check     R CMD build and R CMD check --no-manual
#
# The package ships the contract's .proto: its configure script copies
# proto/ (the contract's one copy) into sdks/r/inst/proto, untracked, at each
# `R CMD INSTALL sdks/r`, so a plain install gives a working package;
# tests/unit/test_generated_drift.py checks it.

R_DIR := sdks/r
R_LIB := $(abspath .rlib)
R_PROTO := proto/alertsidecar/v1/worker.proto  # the contract the package ships: changed, it is reinstalled
R_PACKAGES := r-base-core r-cran-rprotobuf r-cran-httpuv r-cran-jsonlite r-cran-testthat r-cran-roxygen2
R_STAMP := $(R_LIB)/alertworker/DESCRIPTION

.PHONY: r-setup r-install r-test r-check r-docs

r-setup:
	@if Rscript -e 'for (p in c("RProtoBuf", "httpuv", "jsonlite", "testthat", "roxygen2")) loadNamespace(p)' >/dev/null 2>&1; then \
		echo "R and the SDK's packages are installed"; \
	else \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $(R_PACKAGES); \
	fi

$(R_STAMP): $(R_PROTO) $(R_DIR)/DESCRIPTION $(R_DIR)/NAMESPACE $(wildcard $(R_DIR)/R/*.R) $(wildcard $(R_DIR)/inst/conformance/*)
	mkdir -p $(R_LIB)
	R CMD INSTALL --no-multiarch --library=$(R_LIB) $(R_DIR)
	touch $@

r-install: $(R_STAMP)

# The package's tests, then the example filters' (examples/r/tests).
r-test: $(R_STAMP)
	for dir in $(R_DIR)/tests/testthat examples/r/tests; do \
		R_LIBS=$(R_LIB) Rscript -e "testthat::test_dir('$$dir', package = 'alertworker', load_package = 'installed', stop_on_failure = TRUE)" || exit 1; \
	done

# roxygen2 writes NAMESPACE and man/ from the comments in R/ (committed output).
r-docs:
	cd $(R_DIR) && R_LIBS=$(R_LIB) Rscript -e 'roxygen2::roxygenise()'

r-check:
	rm -rf build/r && mkdir -p build/r
	cd build/r && R CMD build --no-build-vignettes $(abspath $(R_DIR)) && \
		R_LIBS=$(R_LIB) _R_CHECK_FORCE_SUGGESTS_=false R CMD check --no-manual alertworker_*.tar.gz
