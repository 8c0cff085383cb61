# Workers (every server after the first) serve llm-node only to the edge, over the private
# network, which Hetzner cloud firewalls do not filter (they apply to the public interfaces):
# the host firewall of each worker admits llm-node's port from the edge's private address
# only. Publicly a worker needs nothing but SSH from the admin networks (Ansible and the
# administrator reach it directly, no jump host) and ICMP.
resource "hcloud_firewall" "workers" {
  count = local.multi_node ? 1 : 0

  name   = "${var.name}-workers"
  labels = local.labels

  rule {
    description = "SSH from the admin networks"
    direction   = "in"
    protocol    = "tcp"
    port        = "22"
    source_ips  = var.admin_cidrs
  }

  rule {
    description = "ICMP: ping and path MTU discovery"
    direction   = "in"
    protocol    = "icmp"
    source_ips  = ["0.0.0.0/0", "::/0"]
  }
}
