# A private network only when there is more than one node: the layout a scale-out
# (workers behind the first node) builds on. Servers get 10.x.1.10, 10.x.1.11, ...
resource "hcloud_network" "this" {
  count = local.multi_node ? 1 : 0

  name     = var.name
  ip_range = var.network_ip_range
  labels   = local.labels
}

resource "hcloud_network_subnet" "this" {
  count = local.multi_node ? 1 : 0

  network_id   = hcloud_network.this[0].id
  type         = "cloud"
  network_zone = local.network_zones[var.location]
  ip_range     = cidrsubnet(var.network_ip_range, 24 - tonumber(split("/", var.network_ip_range)[1]), 1)
}
