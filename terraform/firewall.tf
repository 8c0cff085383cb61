# Inbound: SSH from the admin networks, HTTP/HTTPS and ICMP from anywhere, nothing else.
# Outbound stays open (no "out" rules): apt, Docker images and Let's Encrypt need it.
resource "hcloud_firewall" "this" {
  name   = var.name
  labels = local.labels

  rule {
    description = "SSH from the admin networks"
    direction   = "in"
    protocol    = "tcp"
    port        = "22"
    source_ips  = var.admin_cidrs
  }

  rule {
    description = "HTTP: Let's Encrypt HTTP-01 challenges and the redirect to HTTPS"
    direction   = "in"
    protocol    = "tcp"
    port        = "80"
    source_ips  = ["0.0.0.0/0", "::/0"]
  }

  rule {
    description = "HTTPS: the LLM API and Grafana behind Traefik"
    direction   = "in"
    protocol    = "tcp"
    port        = "443"
    source_ips  = ["0.0.0.0/0", "::/0"]
  }

  rule {
    description = "ICMP: ping and path MTU discovery"
    direction   = "in"
    protocol    = "icmp"
    source_ips  = ["0.0.0.0/0", "::/0"]
  }
}
