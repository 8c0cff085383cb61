locals {
  labels = merge(var.labels, {
    "managed-by" = "terraform"
    app          = var.name
  })

  # Hetzner network zone of each location, for the private subnet.
  network_zones = {
    fsn1 = "eu-central"
    nbg1 = "eu-central"
    hel1 = "eu-central"
    ash  = "us-east"
    hil  = "us-west"
    sin  = "ap-southeast"
  }

  multi_node = var.node_count > 1

  # First-boot setup of each server, with its own host key from var.host_keys.
  user_data = [
    for index in range(var.node_count) : templatefile("${path.module}/templates/cloud-init.yaml.tftpl", {
      deploy_user     = var.deploy_user
      ssh_public_keys = var.ssh_public_keys
      host_key        = lookup(var.host_keys, tostring(index + 1), null)
    })
  ]
}

resource "hcloud_ssh_key" "this" {
  for_each = { for index, key in var.ssh_public_keys : tostring(index) => key }

  name       = "${var.name}-${each.key}"
  public_key = each.value
  labels     = local.labels
}

# Primary IPs are separate resources with delete protection and no auto-delete, so a
# server can be replaced (new image, new type) while the addresses, and with them the
# DNS records, stay the same.
resource "hcloud_primary_ip" "ipv4" {
  count = var.node_count

  name              = "${var.name}-${count.index + 1}-ipv4"
  type              = "ipv4"
  location          = var.location
  auto_delete       = false
  delete_protection = var.delete_protection
  labels            = local.labels
}

resource "hcloud_primary_ip" "ipv6" {
  count = var.node_count

  name              = "${var.name}-${count.index + 1}-ipv6"
  type              = "ipv6"
  location          = var.location
  auto_delete       = false
  delete_protection = var.delete_protection
  labels            = local.labels
}

resource "hcloud_server" "this" {
  count = var.node_count

  name        = "${var.name}-${count.index + 1}"
  server_type = var.server_type
  image       = var.image
  location    = var.location
  labels      = local.labels
  ssh_keys    = [for key in hcloud_ssh_key.this : key.id]

  user_data = local.user_data[count.index]

  # Attached at creation, so the server is never reachable without the firewall. The
  # first server is the edge (HTTP and HTTPS); workers get the one without them.
  firewall_ids = count.index == 0 ? [hcloud_firewall.this.id] : [hcloud_firewall.workers[0].id]

  public_net {
    ipv4_enabled = true
    ipv4         = hcloud_primary_ip.ipv4[count.index].id
    ipv6_enabled = true
    ipv6         = hcloud_primary_ip.ipv6[count.index].id
  }

  dynamic "network" {
    for_each = local.multi_node ? [hcloud_network_subnet.this[0].id] : []
    content {
      subnet_id = network.value
      ip        = cidrhost(hcloud_network_subnet.this[0].ip_range, count.index + 10) # as in inventory.tf
      alias_ips = []
    }
  }

  lifecycle {
    # Keys and user data only matter at first boot: changing them later must not
    # destroy a running server. Ansible manages authorized keys from then on; a rebuilt
    # server gets the same host key (var.host_keys), so known_hosts stays right.
    ignore_changes = [ssh_keys, user_data]
  }
}
