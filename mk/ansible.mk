# ansible/: deploy the stack (make deploy) and verify a deployed host (make verify).
# Static checks of ansible/ run in `make test` through tests/ansible.

ANSIBLE_INVENTORY ?= inventory/terraform.yml
# Extra ansible-playbook arguments, e.g. ANSIBLE_ARGS="--ask-vault-pass --check --diff".
ANSIBLE_ARGS ?= --ask-vault-pass
# Extra pytest arguments for verify, e.g. VERIFY_ARGS="--no-grafana -k https".
VERIFY_ARGS ?=

.PHONY: ansible-check deploy converge verify

ansible-check: $(VENV)/.installed ## Syntax-check and ansible-lint (production profile) ansible/
	cd ansible && $(CURDIR)/$(BIN)/ansible-playbook --syntax-check -i inventory/hand-made.example.yml site.yml
	cd ansible && $(CURDIR)/$(BIN)/ansible-lint

deploy: $(VENV)/.installed ## terraform apply (tf-apply), then ansible-playbook site.yml on the new server
	@if $(MAKE) -n tf-apply >/dev/null 2>&1; then $(MAKE) tf-apply; \
	else echo "deploy: no tf-apply target, using the existing ansible/$(ANSIBLE_INVENTORY)"; fi
	$(MAKE) converge

converge: $(VENV)/.installed ## Only ansible-playbook site.yml (ANSIBLE_INVENTORY, ANSIBLE_ARGS)
	@test -f ansible/$(ANSIBLE_INVENTORY) || { echo "converge: ansible/$(ANSIBLE_INVENTORY) is missing: run terraform apply (make tf-apply) or set ANSIBLE_INVENTORY" >&2; exit 1; }
	cd ansible && $(CURDIR)/$(BIN)/ansible-playbook -i $(ANSIBLE_INVENTORY) site.yml $(ANSIBLE_ARGS)

# Needs VERIFY_BASIC_AUTH_USER and VERIFY_BASIC_AUTH_PASSWORD in the environment for the
# HTTPS checks (read -s VERIFY_BASIC_AUTH_PASSWORD; export VERIFY_BASIC_AUTH_PASSWORD).
verify: $(VENV)/.installed ## Run tests/infra (testinfra) against the deployed host from the Terraform inventory
	@test -f ansible/$(ANSIBLE_INVENTORY) || { echo "verify: ansible/$(ANSIBLE_INVENTORY) is missing: run make deploy first" >&2; exit 1; }
	ANSIBLE_CONFIG=$(CURDIR)/ansible/ansible.cfg $(BIN)/pytest -o addopts="-ra" -p no:cacheprovider tests/infra \
	  --hosts=ansible://llm_nodes --ansible-inventory=ansible/$(ANSIBLE_INVENTORY) \
	  $(VERIFY_ARGS)
