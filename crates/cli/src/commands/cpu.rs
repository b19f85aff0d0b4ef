//! Shell commands that set where the next command runs: the CPU, its context, and its
//! interrupt and preemption state.

use kmemlab_mm::Context;

use super::Command;
use crate::shell::{Shell, Value};

/// This module's shell commands.
pub(super) const COMMANDS: &[Command] = &[
    Command {
        name: "cpu",
        usage: "<n>",
        help: "run the following commands on CPU n",
        mutates: false,
        run: cpu,
    },
    Command {
        name: "ctx",
        usage: "process|softirq|hardirq|nmi",
        help: "run the following commands in that context",
        mutates: false,
        run: ctx,
    },
    Command {
        name: "local_irq_disable",
        usage: "",
        help: "disable interrupts on this CPU (until local_irq_enable)",
        mutates: true,
        run: local_irq_disable,
    },
    Command {
        name: "local_irq_enable",
        usage: "",
        help: "enable interrupts on this CPU",
        mutates: true,
        run: local_irq_enable,
    },
    Command {
        name: "preempt_disable",
        usage: "",
        help: "raise this CPU's preempt count (as spin_lock does)",
        mutates: true,
        run: preempt_disable,
    },
    Command {
        name: "preempt_enable",
        usage: "",
        help: "lower this CPU's preempt count",
        mutates: true,
        run: preempt_enable,
    },
];

fn cpu(sh: &mut Shell, args: &[&str]) -> Result<Value, String> {
    let n = sh.number(args[0])? as usize;
    if n >= sh.machine.config().cpus {
        return Err(format!(
            "no CPU {n} (the machine has {})",
            sh.machine.config().cpus
        ));
    }
    sh.cpu = n;
    Ok(Value::Text(format!("now on CPU {n}, {} context", sh.ctx)))
}

fn ctx(sh: &mut Shell, args: &[&str]) -> Result<Value, String> {
    sh.ctx = Context::from_name(args[0]).ok_or_else(|| {
        format!(
            "unknown context '{}' (process, softirq, hardirq, nmi)",
            args[0]
        )
    })?;
    Ok(Value::Text(format!(
        "CPU {} now runs in {} context",
        sh.cpu, sh.ctx
    )))
}

fn local_irq_disable(sh: &mut Shell, _: &[&str]) -> Result<Value, String> {
    sh.cpu_state_mut().irqs_off = true;
    Ok(Value::Text(format!(
        "interrupts disabled on CPU {}",
        sh.cpu
    )))
}

fn local_irq_enable(sh: &mut Shell, _: &[&str]) -> Result<Value, String> {
    sh.cpu_state_mut().irqs_off = false;
    Ok(Value::Text(format!("interrupts enabled on CPU {}", sh.cpu)))
}

fn preempt_disable(sh: &mut Shell, _: &[&str]) -> Result<Value, String> {
    sh.cpu_state_mut().preempt_depth += 1;
    let depth = sh.cpu_state_mut().preempt_depth;
    Ok(Value::Number(
        depth as u64,
        format!("preempt depth on CPU {}", sh.cpu),
    ))
}

fn preempt_enable(sh: &mut Shell, _: &[&str]) -> Result<Value, String> {
    let state = sh.cpu_state_mut();
    if state.preempt_depth == 0 {
        return Err(
            "preempt_enable without preempt_disable (preempt count would underflow)".into(),
        );
    }
    state.preempt_depth -= 1;
    let depth = state.preempt_depth;
    Ok(Value::Number(
        depth as u64,
        format!("preempt depth on CPU {}", sh.cpu),
    ))
}
