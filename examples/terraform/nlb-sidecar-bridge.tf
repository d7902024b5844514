# ecs-lifecycle example nlb-sidecar-bridge, generated from examples/nlb-sidecar-bridge.taskdef.json by deno task docs.

variable "cpu_architecture" {
  description = "X86_64, or ARM64 (Graviton): the images must be built for it"
  type        = string
  default     = "ARM64"
  validation {
    condition     = contains(["X86_64", "ARM64"], var.cpu_architecture)
    error_message = "cpu_architecture must be X86_64 or ARM64."
  }
}

resource "aws_iam_role" "nlb_sidecar_bridge_task" {
  name_prefix = "nlb-sidecar-bridge-"
  assume_role_policy = jsonencode({
    Version   = "2012-10-17"
    Statement = [
      {
        Effect    = "Allow"
        Principal = {
          Service = "ecs-tasks.amazonaws.com"
        }
        Action    = "sts:AssumeRole"
      },
    ]
  })
}

resource "aws_iam_role_policy" "nlb_sidecar_bridge_task" {
  role = aws_iam_role.nlb_sidecar_bridge_task.id
  policy = jsonencode({
    Version   = "2012-10-17"
    Statement = [
      {
        Sid      = "EcsNlbSidecarBridgeAndHost"
        Effect   = "Allow"
        Action   = ["ecs:DescribeTasks", "ecs:DescribeServices", "ecs:DescribeContainerInstances", "elasticloadbalancing:DescribeTargetGroups", "elasticloadbalancing:DescribeTargetHealth", "ec2:DescribeInstances"]
        Resource = "*"
      },
      {
        Sid      = "OptionalDeregistrationDelay"
        Effect   = "Allow"
        Action   = ["elasticloadbalancing:DescribeTargetGroupAttributes"]
        Resource = "*"
      },
      {
        Sid      = "OptionalOwnContainerChecks"
        Effect   = "Allow"
        Action   = ["ecs:DescribeTaskDefinition"]
        Resource = "*"
      },
    ]
  })
}

resource "aws_ecs_task_definition" "nlb_sidecar_bridge" {
  family                   = "web-application-example"
  network_mode             = "bridge"
  requires_compatibilities = ["EC2"]
  execution_role_arn       = "arn:aws:iam::123456789012:role/ecsTaskExecutionRole"
  task_role_arn            = aws_iam_role.nlb_sidecar_bridge_task.arn

  runtime_platform {
    cpu_architecture        = var.cpu_architecture
    operating_system_family = "LINUX"
  }

  container_definitions = jsonencode([
    {
      name             = "web"
      image            = "nginx:1.27"
      essential        = true
      memory           = 256
      portMappings     = [
        {
          containerPort = 80
          hostPort      = 0
          protocol      = "tcp"
        },
      ]
      stopTimeout      = 60
      logConfiguration = {
        logDriver = "awslogs"
        options   = {
          "awslogs-group"         = "/ecs/web-application-example"
          "awslogs-region"        = "eu-west-1"
          "awslogs-stream-prefix" = "web"
        }
      }
    },
    {
      name                   = "nlb-sidecar"
      image                  = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/ecs-lifecycle/nlb-sidecar:0.1.0"
      essential              = true
      memoryReservation      = 56
      readonlyRootFilesystem = true
      dependsOn              = [
        {
          containerName = "web"
          condition     = "START"
        },
      ]
      environment            = [
        {
          name  = "DEREGISTRATION_WAIT"
          value = "180"
        },
        {
          name  = "POLLING_FREQUENCY"
          value = "10"
        },
        {
          name  = "TARGET_CONTAINER_NAME"
          value = "web"
        },
      ]
      healthCheck            = {
        command     = ["CMD", "/usr/local/bin/ecs-nlb-sidecar", "health"]
        interval    = 30
        timeout     = 5
        retries     = 3
        startPeriod = 60
      }
      logConfiguration       = {
        logDriver = "awslogs"
        options   = {
          "awslogs-group"         = "/ecs/web-application-example"
          "awslogs-region"        = "eu-west-1"
          "awslogs-stream-prefix" = "nlb-sidecar"
        }
      }
    },
  ])
}
