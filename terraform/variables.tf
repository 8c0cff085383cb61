variable "hcloud_token" {
  type        = string
  description = "Hetzner Cloud API token (Read & Write) of the project to deploy into. Leave unset to use the HCLOUD_TOKEN environment variable instead."
  sensitive   = true
  default     = null

  validation {
    condition     = var.hcloud_token == null || can(regex("^[A-Za-z0-9]{64}$", var.hcloud_token))
    error_message = "hcloud_token must be a Hetzner Cloud API token: 64 letters and digits. Create one in the Hetzner Console under your project, Security, API tokens (Read & Write), or leave hcloud_token unset and export HCLOUD_TOKEN."
  }
}

variable "name" {
  type        = string
  description = "Prefix for every resource name (servers are <name>-1, <name>-2, ...)."
  default     = "llm"

  validation {
    condition     = can(regex("^[a-z]([a-z0-9-]{0,28}[a-z0-9])?$", var.name))
    error_message = "name must be 1 to 30 lower-case letters, digits or hyphens, start with a letter and not end with a hyphen (it becomes part of the server host names)."
  }
}

variable "domain" {
  type        = string
  description = "Base domain. The API is served at llm.<domain> and Grafana at monitoring.<domain>."

  validation {
    condition     = length(var.domain) <= 253 && can(regex("^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\\.)+[a-z]([a-z0-9-]{0,61}[a-z0-9])$", var.domain))
    error_message = "domain must be a bare lower-case domain name such as example.com: no scheme (https://), no path, no port, no trailing dot, no upper case. Internationalised names must be given in their xn-- (punycode) form."
  }
}

variable "create_dns_zone" {
  type        = bool
  description = "true: create the DNS zone for domain in this Hetzner project (then point the domain's NS records at the name servers in the dns_nameservers output). false: use a zone that already exists in the project."
  default     = true
}

variable "dns_ttl" {
  type        = number
  description = "TTL in seconds of the A, AAAA and CAA records. Short, so that a changed address is picked up quickly."
  default     = 300

  validation {
    condition     = var.dns_ttl >= 60 && var.dns_ttl <= 86400 && floor(var.dns_ttl) == var.dns_ttl
    error_message = "dns_ttl must be a whole number of seconds from 60 (the smallest Hetzner DNS accepts) to 86400."
  }
}

variable "location" {
  type        = string
  description = "Hetzner Cloud location of the server(s) and their primary IPs: fsn1, nbg1, hel1 (EU), ash, hil (US) or sin (Singapore)."
  default     = "fsn1"

  validation {
    condition     = contains(["fsn1", "nbg1", "hel1", "ash", "hil", "sin"], var.location)
    error_message = "location must be one of fsn1 (Falkenstein), nbg1 (Nuremberg), hel1 (Helsinki), ash (Ashburn), hil (Hillsboro) or sin (Singapore)."
  }
}

variable "server_type" {
  type        = string
  description = "Hetzner Cloud server type, x86 with at least 8 GB of memory. The default cx33 has 4 vCPU and 8 GB."
  default     = "cx33"

  validation {
    condition     = !contains(["cx23", "cpx12", "cpx22", "cax11"], var.server_type)
    error_message = "This server type has 4 GB of memory or less, but Llama 3 8B Q4_0 needs about 7 GB (4.7 GB of weights plus the context, Docker and the monitoring stack). Choose cx33 (8 GB, the default) or a larger type."
  }

  validation {
    condition = contains([
      "cx33", "cx43", "cx53",
      "cpx32", "cpx42", "cpx52", "cpx62",
      "ccx13", "ccx23", "ccx33", "ccx43", "ccx53", "ccx63",
    ], var.server_type)
    error_message = "server_type must be a current x86 type with at least 8 GB: cx33, cx43, cx53 (shared, EU only), cpx32, cpx42, cpx52, cpx62 (shared) or ccx13 to ccx63 (dedicated). Arm (cax) types are not offered because the gpt4all bindings publish x86-64 Linux wheels only; older names such as cx32 or cpx31 no longer exist."
  }

  validation {
    condition     = !startswith(var.server_type, "cx") || contains(["fsn1", "nbg1", "hel1"], var.location)
    error_message = "cx (cost-optimised) server types exist only in fsn1, nbg1 and hel1. In ash, hil or sin choose cpx32 or larger, or a ccx type."
  }
}

variable "image" {
  type        = string
  description = "Operating system image. The Ansible roles target Debian 13 (trixie) or later."
  default     = "debian-13"

  validation {
    condition     = can(regex("^debian-(1[3-9]|[2-9][0-9])$", var.image))
    error_message = "image must be a Debian image from debian-13 on (for example debian-13): the Ansible roles and the cloud-init user data are written for Debian 13 or later."
  }
}

variable "ssh_public_keys" {
  type        = list(string)
  description = "OpenSSH public keys (one line each, e.g. the contents of ~/.ssh/id_ed25519.pub) allowed to log in as deploy_user."

  validation {
    condition     = length(var.ssh_public_keys) >= 1
    error_message = "ssh_public_keys must hold at least one public key: root and password logins are disabled, so without a key nobody can log in."
  }

  validation {
    condition     = alltrue([for key in var.ssh_public_keys : can(regex("^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh\\.com|sk-ecdsa-sha2-nistp256@openssh\\.com) AAAA[A-Za-z0-9+/]+={0,3}( [^\\n]*)?$", key))])
    error_message = "Each entry of ssh_public_keys must be one OpenSSH public key line such as \"ssh-ed25519 AAAA... you@laptop\" (the .pub file), never a private key."
  }
}

variable "admin_cidrs" {
  type        = list(string)
  description = "Networks (CIDR) allowed to reach SSH on port 22, e.g. [\"203.0.113.7/32\", \"2001:db8::/64\"]. Ports 80 and 443 are open to everyone."

  validation {
    condition     = length(var.admin_cidrs) >= 1
    error_message = "admin_cidrs must name at least one network, e.g. your own public address as \"203.0.113.7/32\"; otherwise Ansible cannot reach the server."
  }

  validation {
    condition     = alltrue([for cidr in var.admin_cidrs : can(cidrhost(cidr, 0))])
    error_message = "Each entry of admin_cidrs must be an IPv4 or IPv6 network in CIDR notation, such as \"203.0.113.7/32\" or \"2001:db8::/64\"."
  }

  validation {
    condition     = var.allow_ssh_from_anywhere || !anytrue([for cidr in var.admin_cidrs : endswith(cidr, "/0")])
    error_message = "admin_cidrs opens SSH to the whole internet (a /0 network). Give your own addresses instead, or set allow_ssh_from_anywhere = true if that is really what you want."
  }
}

variable "ssh_address_family" {
  type        = string
  description = "Which of the server's addresses Ansible connects to (the inventory's ansible_host): \"ipv4\" or \"ipv6\" (for an admin network without IPv4)."
  default     = "ipv4"

  validation {
    condition     = contains(["ipv4", "ipv6"], var.ssh_address_family)
    error_message = "ssh_address_family must be \"ipv4\" or \"ipv6\"."
  }

  validation {
    condition     = anytrue([for cidr in var.admin_cidrs : strcontains(cidr, ":") == (var.ssh_address_family == "ipv6")])
    error_message = "No network in admin_cidrs can reach the server's address that ssh_address_family chooses, so Ansible could not connect: with only IPv6 admin networks set ssh_address_family = \"ipv6\", with only IPv4 ones \"ipv4\" (or add a network of that family to admin_cidrs)."
  }
}

variable "ssh_identity_file" {
  type        = string
  description = "Private key (or its .pub, for a key held in an agent) that Ansible offers, and only that one (IdentitiesOnly), so an agent with many keys cannot trip MaxAuthTries or fail2ban. \"\" = ssh's defaults."
  default     = ""
}

variable "host_keys" {
  type = map(object({
    private = string
    public  = string
  }))
  description = "SSH host key of each server by number (\"1\" is <name>-1), made once by scripts/host_keys.py into host-keys.auto.tfvars.json (make tf-apply runs it first). cloud-init installs it and Terraform writes ansible/inventory/known_hosts, so Ansible connects with StrictHostKeyChecking=yes, also after a rebuild."
  sensitive   = true
  # Not a plain required variable: {} gets the message below, which says how to make them.
  default = {}

  validation {
    condition     = alltrue([for i in range(var.node_count) : contains(keys(var.host_keys), tostring(i + 1))])
    error_message = "host_keys has no SSH host key for every server (1 to node_count). Run `make tf-apply`, which runs `python3 scripts/host_keys.py` first, or run that script yourself before terraform plan/apply."
  }

  validation {
    condition     = alltrue([for key in values(var.host_keys) : can(regex("^ssh-ed25519 AAAA[A-Za-z0-9+/]+={0,3}( [^\\n]*)?$", key.public)) && startswith(key.private, "-----BEGIN OPENSSH PRIVATE KEY-----")])
    error_message = "Each entry of host_keys must be an ed25519 key pair in OpenSSH format, as scripts/host_keys.py writes them (public: \"ssh-ed25519 AAAA...\", private: an OpenSSH private key)."
  }
}

variable "allow_ssh_from_anywhere" {
  type        = bool
  description = "Must be true for admin_cidrs to contain 0.0.0.0/0 or ::/0 (SSH open to the world). Keys-only login still applies."
  default     = false
}

variable "deploy_user" {
  type        = string
  description = "Login created by cloud-init with the SSH keys and password-less sudo; Ansible connects as this user."
  default     = "deploy"

  validation {
    condition     = can(regex("^[a-z_][a-z0-9_-]{0,31}$", var.deploy_user)) && var.deploy_user != "root"
    error_message = "deploy_user must be a Linux user name (lower-case letters, digits, _ or -, at most 32 characters, starting with a letter or _) and not root, whose SSH login is disabled."
  }
}

variable "labels" {
  type        = map(string)
  description = "Extra Hetzner labels put on every resource (the module adds managed-by=terraform and app=<name>)."
  default     = {}

  validation {
    condition     = alltrue([for key, value in var.labels : can(regex("^[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$", key)) && can(regex("^([A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?)?$", value))])
    error_message = "Label keys and values must be at most 63 characters of letters, digits, '.', '_' or '-', starting and ending with a letter or digit (values may be empty)."
  }
}

variable "node_count" {
  type        = number
  description = "Number of servers. The first is the edge (Traefik, monitoring, llm-node; DNS points at it); every further one is a worker running llm-node behind it on a private network, created when node_count > 1."
  default     = 1

  validation {
    condition     = var.node_count >= 1 && var.node_count <= 10 && floor(var.node_count) == var.node_count
    error_message = "node_count must be a whole number from 1 to 10."
  }
}

variable "network_ip_range" {
  type        = string
  description = "Private IPv4 range (/8 to /23) of the network created when node_count > 1; the servers' subnet is its second /24."
  default     = "10.42.0.0/16"

  validation {
    condition     = can(cidrnetmask(var.network_ip_range)) && can(regex("/([89]|1[0-9]|2[0-3])$", var.network_ip_range))
    error_message = "network_ip_range must be an IPv4 CIDR from /8 to /23, such as \"10.42.0.0/16\" (RFC 1918 ranges are the usual choice)."
  }

  # Hetzner accepts only RFC 1918 ranges for a network; checked here so that a bad range
  # fails at plan time, not halfway through an apply with node_count > 1.
  validation {
    condition = !can(cidrnetmask(var.network_ip_range)) || anytrue([
      for private in ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"] :
      tonumber(split("/", var.network_ip_range)[1]) >= tonumber(split("/", private)[1])
      && cidrhost("${split("/", var.network_ip_range)[0]}/${split("/", private)[1]}", 0) == cidrhost(private, 0)
    ])
    error_message = "network_ip_range must lie inside a private (RFC 1918) range: 10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16, e.g. \"10.42.0.0/16\". Hetzner refuses other ranges for a private network, which node_count > 1 creates."
  }
}

variable "delete_protection" {
  type        = bool
  description = "Protect the primary IPs (and a zone created here) against deletion, so DNS and addresses survive a rebuild. Set to false and apply before terraform destroy."
  default     = true
}

variable "data_volume_size_gb" {
  type        = number
  description = "Size in GB of the persistent data volume of each server (model, certificates, monitoring data; kept when a server is replaced); 0 = none, the data stays on the server's own disk."
  default     = 15

  validation {
    condition     = var.data_volume_size_gb == 0 || (var.data_volume_size_gb >= 10 && var.data_volume_size_gb <= 10240 && floor(var.data_volume_size_gb) == var.data_volume_size_gb)
    error_message = "data_volume_size_gb must be 0 (no volume) or a whole number of GB from 10 (Hetzner's smallest volume) to 10240; the model alone takes 4.7 GB, and changing it needs room for two."
  }
}
