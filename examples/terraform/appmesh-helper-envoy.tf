# ecs-lifecycle example appmesh-helper-envoy, generated from examples/appmesh-helper-envoy.taskdef.json by deno task docs.

variable "cpu_architecture" {
  description = "X86_64, or ARM64 (Graviton): the images must be built for it"
  type        = string
  default     = "ARM64"
  validation {
    condition     = contains(["X86_64", "ARM64"], var.cpu_architecture)
    error_message = "cpu_architecture must be X86_64 or ARM64."
  }
}

resource "aws_ecs_task_definition" "appmesh_helper_envoy" {
  family                   = "orders-api"
  network_mode             = "awsvpc"
  requires_compatibilities = ["FARGATE"]
  cpu                      = "512"
  memory                   = "1024"
  execution_role_arn       = "arn:aws:iam::111122223333:role/ecsTaskExecutionRole"
  task_role_arn            = "arn:aws:iam::111122223333:role/orders-api-task"

  runtime_platform {
    cpu_architecture        = var.cpu_architecture
    operating_system_family = "LINUX"
  }

  proxy_configuration {
    type           = "APPMESH"
    container_name = "envoy"
    properties     = {
      IgnoredUID       = "1337"
      ProxyIngressPort = "15000"
      ProxyEgressPort  = "15001"
      AppPorts         = "8080"
      EgressIgnoredIPs = "169.254.170.2,169.254.169.254"
    }
  }

  container_definitions = jsonencode([
    {
      name             = "app"
      image            = "111122223333.dkr.ecr.eu-west-1.amazonaws.com/orders-api:2.4.1"
      essential        = true
      portMappings     = [
        {
          containerPort = 8080
          protocol      = "tcp"
        },
      ]
      dependsOn        = [
        {
          containerName = "envoy"
          condition     = "START"
        },
      ]
      stopTimeout      = 30
      logConfiguration = {
        logDriver = "awslogs"
        options   = {
          "awslogs-group"         = "/ecs/orders-api"
          "awslogs-region"        = "eu-west-1"
          "awslogs-stream-prefix" = "app"
        }
      }
    },
    {
      name             = "envoy"
      image            = "111122223333.dkr.ecr.eu-west-1.amazonaws.com/orders-api-envoy:1.34.1"
      essential        = true
      user             = "1337"
      command          = ["envoy", "-c", "/etc/envoy/bootstrap.yaml", "--drain-time-s", "60", "--drain-strategy", "immediate"]
      healthCheck      = {
        command     = ["CMD-SHELL", "curl -sf http://127.0.0.1:9901/ready || exit 1"]
        interval    = 5
        timeout     = 2
        retries     = 3
        startPeriod = 10
      }
      stopTimeout      = 30
      logConfiguration = {
        logDriver = "awslogs"
        options   = {
          "awslogs-group"         = "/ecs/orders-api"
          "awslogs-region"        = "eu-west-1"
          "awslogs-stream-prefix" = "envoy"
        }
      }
    },
    {
      name              = "appmesh-helper"
      image             = "111122223333.dkr.ecr.eu-west-1.amazonaws.com/ecs-lifecycle/appmesh-helper:0.1.0"
      essential         = true
      memoryReservation = 48
      environment       = [
        {
          name  = "DRAIN_MODE"
          value = "connections"
        },
        {
          name  = "DRAIN_DELAY"
          value = "40"
        },
        {
          name  = "DRAIN_TIMEOUT"
          value = "60"
        },
        {
          name  = "DRAIN_QUIET_PERIOD"
          value = "3"
        },
        {
          name  = "ENVOY_ADMIN_URL"
          value = "http://127.0.0.1:9901"
        },
        {
          name  = "ENVOY_INGRESS_LISTENER"
          value = "15000"
        },
        {
          name  = "APP_HEALTHCHECK_URL"
          value = "http://127.0.0.1:8080/health"
        },
      ]
      dependsOn         = [
        {
          containerName = "app"
          condition     = "START"
        },
        {
          containerName = "envoy"
          condition     = "START"
        },
      ]
      stopTimeout       = 120
      healthCheck       = {
        command     = ["CMD", "/usr/local/bin/ecs-appmesh-helper", "health"]
        interval    = 5
        timeout     = 5
        retries     = 3
        startPeriod = 10
      }
      logConfiguration  = {
        logDriver = "awslogs"
        options   = {
          "awslogs-group"         = "/ecs/orders-api"
          "awslogs-region"        = "eu-west-1"
          "awslogs-stream-prefix" = "appmesh-helper"
        }
      }
    },
  ])
}
