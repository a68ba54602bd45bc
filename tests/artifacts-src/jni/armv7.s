    .syntax unified
    .arch armv7-a
    .eabi_attribute Tag_CPU_arch, 10
    .eabi_attribute Tag_ARM_ISA_use, 1
    .arm
    .text
    .globl fixture_answer
    .type fixture_answer, %function
fixture_answer:
    mov r0, #42
    bx lr
