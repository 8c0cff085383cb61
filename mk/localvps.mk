# The local Debian 13 "VPS" (tests/localvps): a debootstrap tree booted with systemd-nspawn,
# apt through apt-cacher-ng, Pebble as the ACME server. site.yml runs against it for real.
# debootstrap + systemd-nspawn: the VPS; apt-cacher-ng: its apt mirror; pebble: ACME;
# openssh-client, iproute2, util-linux (nsenter): reaching it.
SYSTEM_PACKAGES += debootstrap systemd-container apt-cacher-ng pebble openssh-client iproute2 util-linux

LOCALVPS_ROOTFS := $(CACHE_DIR)/localvps/trixie-rootfs
# tests/localvps keeps its caches (root filesystem, image base, apt-cacher-ng) under here too.
export LLM_VPS_CACHE ?= $(CACHE_DIR)
# `make test` (CI) runs tests/localvps too: as root on Linux it boots the VPS (about 10 min
# with the caches warm, plus about 4 min each for the first-deploy-before-DNS and the
# rebuild scenarios); elsewhere it skips and says why. LOCALVPS=0 switches it off.
export LOCALVPS ?= 1

.PHONY: localvps-rootfs test-localvps localvps-debug

localvps-rootfs: ## Build the cached Debian 13 root filesystem of the local VPS (root, ~80 s once)
	tests/localvps/build-rootfs.sh $(LOCALVPS_ROOTFS)

test-localvps: $(VENV)/.installed $(TINY_MODEL) system-deps ## Boot the local VPS and run site.yml + tests/infra against it (root)
	LOCALVPS=1 LLM_TEST_MODEL="$(TINY_MODEL)" $(BIN)/pytest tests/localvps

localvps-debug: $(VENV)/.installed $(TINY_MODEL) system-deps ## Like test-localvps, but keeps the VPS up until Enter (prints its ssh command)
	LOCALVPS=1 LOCALVPS_HOLD=1 LLM_TEST_MODEL="$(TINY_MODEL)" $(BIN)/pytest -s tests/localvps
