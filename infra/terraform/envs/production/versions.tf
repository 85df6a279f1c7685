terraform {
  required_version = ">= 1.6"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.70, < 7.0"
    }
    random = {
      source  = "hashicorp/random"
      version = ">= 3.6, < 4.0"
    }
  }
  # State in S3 with locking; give the bucket and key at init:
  #   terraform init -backend-config="bucket=<state bucket>" -backend-config="key=healthmed/production.tfstate" \
  #     -backend-config="region=<region>" -backend-config="use_lockfile=true"
  backend "s3" {}
}

provider "aws" {
  region = var.region
  default_tags {
    tags = {
      project     = "healthmed"
      environment = var.environment
      managed-by  = "terraform"
    }
  }
}
