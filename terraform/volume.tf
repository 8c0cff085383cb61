# An optional Hetzner Cloud Volume per server for the stack's data: the model, acme.json and
# the Prometheus, Alertmanager and Grafana data. It is a resource of its own, like the
# primary IPs: replacing the server (a new image, a broken host) keeps it, the new server
# gets it attached, and the playbook mounts it again by its stable id, so a rebuild orders
# no certificate and downloads no model.
resource "hcloud_volume" "data" {
  count = var.data_volume_size_gb > 0 ? var.node_count : 0

  name              = "${var.name}-${count.index + 1}-data"
  size              = var.data_volume_size_gb
  location          = var.location
  format            = "ext4"
  delete_protection = var.delete_protection
  labels            = local.labels
}

# automount off: the playbook mounts it (by /dev/disk/by-id) where the stack expects it.
resource "hcloud_volume_attachment" "data" {
  count = length(hcloud_volume.data)

  volume_id = hcloud_volume.data[count.index].id
  server_id = hcloud_server.this[count.index].id
  automount = false
}
