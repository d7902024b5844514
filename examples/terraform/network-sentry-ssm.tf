# ecs-lifecycle network sentry on ECS Anywhere hosts, generated from deploy/ecs-network-sentry.service by deno task docs.

variable "binary_base_url" {
  description = "Where dist/ of make compile is served: <url>/<arch>-unknown-linux-gnu/ecs-network-sentry"
  type        = string
}

variable "target_tag" {
  description = "The tag of the ECS Anywhere managed instances that get the sentry"
  type        = object({ key = string, value = string })
  default     = { key = "ecs-network-sentry", value = "enabled" }
}

data "aws_region" "current" {}

resource "aws_ssm_association" "ecs_network_sentry" {
  association_name = "ecs-network-sentry"
  name             = "AWS-RunShellScript"

  targets {
    key    = "tag:${var.target_tag.key}"
    values = [var.target_tag.value]
  }

  parameters = {
    commands = <<-SCRIPT
      set -eu
      curl -fsSL -o /usr/local/bin/ecs-network-sentry.new "${var.binary_base_url}/$(uname -m)-unknown-linux-gnu/ecs-network-sentry"
      chmod 0755 /usr/local/bin/ecs-network-sentry.new
      mv /usr/local/bin/ecs-network-sentry.new /usr/local/bin/ecs-network-sentry
      cat > /etc/systemd/system/ecs-network-sentry.service <<'UNIT'
      # ECS Anywhere network sentry (replaces ecs-external-instance-network-sentry.service).
      # Install: make install (binary + this unit), then set --region below and:
      #   systemctl daemon-reload && systemctl enable --now ecs-network-sentry
      [Unit]
      Description=Amazon ECS External Instance Network Sentry
      Documentation=https://github.com/aws-samples/ecs-external-instance-network-sentry
      Requires=docker.service
      After=docker.service ecs.service
      Wants=network-online.target
      After=network-online.target

      [Service]
      Type=simple
      ExecStart=/usr/local/bin/ecs-network-sentry --region ${data.aws_region.current.name} --log-format text
      # A proxy in front of the region, if any:
      #Environment=HTTPS_PROXY=http://proxy.example.internal:3128
      #Environment=NO_PROXY=169.254.169.254,.internal
      Restart=always
      RestartSec=5s
      # Exit 2 is a configuration error (an unedited --region above, a bad flag): restarting cannot fix it.
      RestartPreventExitStatus=2
      # SIGTERM ends the current Docker call, keeps the journal and exits 0; nothing is undone.
      KillSignal=SIGTERM
      TimeoutStopSec=30s
      StateDirectory=ecs-network-sentry
      # Peak RSS measured by bench/network_sentry.ts: 56 MiB with 50 ECS containers, 65-71 MiB (82 on a loaded machine)
      # with 300. Over twice that: a kill at the limit restarts the sentry from its journal, but a limit this
      # close to its needs would do so in the middle of an outage on a large host.
      MemoryMax=192M

      [Install]
      WantedBy=multi-user.target
      UNIT
      systemctl daemon-reload
      systemctl enable ecs-network-sentry
      systemctl restart ecs-network-sentry
    SCRIPT
  }
}
