# ecs-lifecycle example nlb-sidecar-fargate, generated from examples/nlb-sidecar-fargate.taskdef.json by deno task docs.

variable "cpu_architecture" {
  description = "X86_64, or ARM64 (Graviton): the images must be built for it"
  type        = string
  default     = "X86_64"
  validation {
    condition     = contains(["X86_64", "ARM64"], var.cpu_architecture)
    error_message = "cpu_architecture must be X86_64 or ARM64."
  }
}

resource "aws_iam_role" "nlb_sidecar_fargate_task" {
  name_prefix = "nlb-sidecar-fargate-"
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

resource "aws_iam_role_policy" "nlb_sidecar_fargate_task" {
  role = aws_iam_role.nlb_sidecar_fargate_task.id
  policy = jsonencode({
    Version   = "2012-10-17"
    Statement = [
      {
        Sid      = "EcsNlbSidecarAwsvpc"
        Effect   = "Allow"
        Action   = ["ecs:DescribeTasks", "ecs:DescribeServices", "elasticloadbalancing:DescribeTargetGroups", "elasticloadbalancing:DescribeTargetHealth"]
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

resource "aws_ecs_task_definition" "nlb_sidecar_fargate" {
  family                   = "web-application-example"
  network_mode             = "awsvpc"
  requires_compatibilities = ["FARGATE"]
  cpu                      = "512"
  memory                   = "1024"
  execution_role_arn       = "arn:aws:iam::123456789012:role/ecsTaskExecutionRole"
  task_role_arn            = aws_iam_role.nlb_sidecar_fargate_task.arn

  runtime_platform {
    cpu_architecture        = var.cpu_architecture
    operating_system_family = "LINUX"
  }

  container_definitions = jsonencode([
    {
      name             = "web"
      image            = "nginx:1.27"
      essential        = true
      portMappings     = [
        {
          containerPort = 80
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
      environment            = [
        {
          name  = "DEREGISTRATION_WAIT"
          value = "120"
        },
        {
          name  = "DRAIN_MODE"
          value = "connections"
        },
        {
          name  = "DRAIN_QUIET_PERIOD"
          value = "5"
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
